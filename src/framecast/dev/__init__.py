"""What `make run` needs on a developer's machine: the launcher (Valkey + inference + edge, one command) and
the embedded Valkey server it and the tests start (no Redis installation needed)."""
