"""The inference service: frames from a source through a torch model to JPEG tiers on the Redis bus."""
