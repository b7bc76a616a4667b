"""The one harness of tests and benches: what every suite would otherwise write again.

- `timing`: the slow-machine factor (`scaled`), the deadline poll (`wait_until`, `wait_until_async`),
  the microsecond clocks;
- `procs`: service processes (`Service`), the stack launcher (`edge_service`, `inference_service`,
  `running`), HTTP readiness;
- `rawws`: the raw viewer (a WebSocket done by hand; frames parsed with framecast.protocol);
- `link`: the link model (`FifoLink`) that tests put between the edge's pure viewer state and a viewer.

It imports only the standard library and `framecast` (no pytest, no bench, no tools), so bench/ and
tools/ import it too. `free_port` is `framecast.dev.embedded.free_port` (the launcher needs it).
"""
