"""`python -m framecast.edge`: run the edge on uvicorn, with a bounded drain on SIGTERM.

With `--workers N` (or one per CPU in a container) this process supervises N
edge workers on the same port (see workers.py); each runs what follows.

SIGTERM (or a first Ctrl-C): `/readyz` fails at once, viewers get a "draining"
status, after `drain_delay_s` they are closed with 1012, and the process exits
within `drain_timeout_s`. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Generator
from types import FrameType

import uvicorn

from framecast.edge import hotpath
from framecast.edge.app import EdgeRuntime, create_app
from framecast.edge.guard import ConnectionGuard
from framecast.edge.metrics import EdgeMetrics
from framecast.edge.proxies import TrustedProxies
from framecast.edge.settings import EdgeSettings
from framecast.edge.workers import STOP_GRACE_S, Supervisor, WorkerInfo, resolve_workers, reuseport_socket
from framecast.logs import QuietClientErrors, RateLimitedLog, setup_logging
from framecast.settings import load_settings

log = logging.getLogger("framecast.edge")
# The collector's young generation: the hot path allocates a few short-lived objects per frame and per ack
# (in-flight records, ints), so at CPython's default (700) the edge collected hundreds of times a second, and
# every older-generation pass walked each viewer's state again. Objects alive once the app is built are
# frozen out of collections, and the threshold is raised: cycles are still collected, less often.
GC_YOUNG_THRESHOLD = 20_000


def uvicorn_config(app: object, settings: EdgeSettings) -> uvicorn.Config:
    """The uvicorn configuration the edge needs (used by main() and by tests).

    HTTP is h11 with the edge's guard below it (framecast.edge.guard: connection caps, request head size
    and time, idle HTTP connections, ping rate and unsent bytes of WebSockets): httptools has no header
    size limit. Only requests and WebSocket handshakes go through the (pure-Python) h11 parser, never frames.
    """
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    guard = runtime.guard if isinstance(runtime, EdgeRuntime) else \
        ConnectionGuard(settings, EdgeMetrics(), TrustedProxies.parse(settings.forwarded_allow_ips))
    http, ws = guard.protocols()
    quiet_client_errors(settings.access_log)
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        http=http,
        ws=ws,  # framecast.edge.wsconn.ViewerProtocol: uvicorn's handshake, the edge's own frames after it
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=max(1, int(settings.idle_timeout_s)),
        ws_per_message_deflate=False,  # JPEG does not compress; deflate costs ~30x CPU per viewer
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=settings.ping_interval_s or None,
        ws_ping_timeout=settings.ping_timeout_s,
        lifespan="on",
        log_config=None,
        access_log=settings.access_log,
        proxy_headers=False,  # the app's ForwardedFor takes the right-most untrusted address (edge/proxies.py)
        timeout_graceful_shutdown=2,
        server_header=False,
    )


# uvicorn's lines about a client's mistake, one per event (with a traceback for invalid UTF-8): one summary line
CLIENT_ERROR_LINES = {
    "Invalid HTTP request received.": "bad_request",
    "Invalid UTF-8 sequence received from client.": "invalid_utf8",
    "Unsupported upgrade request.": "bad_upgrade",
}


class PerConnectionLines(logging.Filter):
    """Drops uvicorn's line per WebSocket ('"WebSocket /ws/demo" [accepted]', "connection open/closed"): with
    the access log off, a connection flood must not become a log flood."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        return not (msg.startswith('%s - "WebSocket %s"') or msg in ("connection open", "connection closed"))


def quiet_client_errors(access_log: bool = False) -> None:
    """Install the summary filter on uvicorn's error logger (once), and without an access log drop its
    per-connection lines."""
    uv = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietClientErrors) for f in uv.filters):
        summary = RateLimitedLog(logging.getLogger("framecast.edge.guard"), "client errors", interval=10.0)
        uv.addFilter(QuietClientErrors(CLIENT_ERROR_LINES, summary))
    lines = [f for f in uv.filters if isinstance(f, PerConnectionLines)]
    if not access_log and not lines:
        uv.addFilter(PerConnectionLines())
    elif access_log:
        for f in lines:
            uv.removeFilter(f)


class EdgeServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains viewers before stopping."""

    def __init__(self, config: uvicorn.Config, runtime: EdgeRuntime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        self._loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self._loop is None:
            self.force_exit = True
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        if self._drain_task is not None:
            return
        log.info("received %s: draining", signal.Signals(sig).name)
        self._drain_task = asyncio.create_task(self._drain())
        # the hard bound: whatever happens, stop by drain_timeout_s
        assert self._loop is not None
        self._loop.call_later(self.runtime.settings.drain_timeout_s, self._force)

    def _force(self) -> None:
        self.should_exit = True
        self.force_exit = True

    async def _drain(self) -> None:
        try:
            await self.runtime.drain()
        finally:
            self.should_exit = True


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(EdgeSettings, argv, prog="framecast-edge",
                             description="framecast edge: fan-out of live frames to WebSocket viewers")
    setup_logging(settings.log_level, settings.log_format)
    worker = WorkerInfo.from_env()
    hot_path = hotpath.check()  # stops here on modules compiled from older sources
    if worker is None:  # the supervisor says it for its workers
        log.info("edge hot path: %s", hot_path)
    if worker is None:
        count = resolve_workers(settings.workers)
        if count > 1:
            args = sys.argv[1:] if argv is None else argv
            # a worker stops within its drain timeout; the supervisor's bound adds its shutdown's own bounds
            sys.exit(Supervisor(count, settings.host, settings.port, args,
                                stop_timeout_s=settings.drain_timeout_s + STOP_GRACE_S).run())
    elif settings.edge_id:
        settings = settings.model_copy(update={"edge_id": f"{settings.edge_id[:58]}-w{worker.index}"})
    app = create_app(settings, worker=worker)
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    server = EdgeServer(uvicorn_config(app, settings), app.state.runtime)
    if worker is not None:
        server.run(sockets=[reuseport_socket(settings.host, settings.port)])
    else:
        server.run()
    if server.started is False:
        sys.exit(1)


if __name__ == "__main__":
    main()
