"""The edge service: latency-bounded fan-out of bus frames to WebSocket viewers (see docs/edge.md)."""
