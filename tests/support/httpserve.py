"""A small HTTP server in a thread of the test process (a clip to stream, a page to load), on loopback."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    """Static files, without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_in_thread(handler: Callable[..., Any], port: int = 0) -> http.server.ThreadingHTTPServer:
    """A started server on 127.0.0.1:`port` (a free one by default); the caller shuts it down."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_files(directory: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    return serve_in_thread(functools.partial(QuietFiles, directory=str(directory)), port)


@contextlib.contextmanager
def serving(handler: Callable[..., Any]) -> Iterator[http.server.ThreadingHTTPServer]:
    """`serve_in_thread`, shut down and closed at the end."""
    server = serve_in_thread(handler)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
