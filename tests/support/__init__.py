"""The one harness of tests and benches: what every suite would otherwise write again.

- `timing`: the slow-machine factor (`scaled`), the deadline poll (`wait_until`, `wait_until_async`), the
  microsecond clocks (`wall_us`, `mono_us`);
- `procs`: service processes (`Service`, any binary), `edge_service`/`inference_service`, HTTP and stream
  readiness (`wait_http`, `wait_stream_live`), `EdgeProcess` (an edge alone);
- `stack`: the stack launcher (`Stack`, `stack_running`: embedded Valkey + inference + edge);
- `publisher`: a frame publisher standing in for the inference service;
- `viewer`: the `websockets` viewer (`open_viewer`, `messages`, `ViewerClient`);
- `rawws`: the raw viewer (a WebSocket done by hand on a socket; frames parsed with framecast.protocol);
- `link`: the link model (`FifoLink`) tests put between the edge's pure viewer state and a viewer;
- `metrics`: reading a /metrics exposition; `httpserve`: an HTTP server in a thread; `browser`: headless
  Chromium; `settings`: the bad-settings refusal check.

bench/ and tools/ import it too: it imports the standard library, `framecast` and the test dependencies,
never bench/ or tools/; nothing under src/ imports it. `free_port` is `framecast.dev.embedded.free_port`
(the launcher needs it).
"""
