"""The edge's FastAPI application: the viewer WebSocket, the HTTP surface, and drain on shutdown.

`create_app(settings)` builds the app; its lifespan opens the Redis clients and
the fan-out hub. `/ws/{stream}` admits a viewer (Origin, limits, auth, known
stream; each refusal has its close code, see docs/edge.md), sends the server
hello and a status, then runs the viewer's control loop while its
`ViewerSession` sender writes frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState

from framecast import constants as C
from framecast.bus import REDIS_ERRORS, Keys, StreamInfo, async_client
from framecast.bus import now_us as wall_us
from framecast.edge import auth
from framecast.edge.fanout import CLOSE_WAIT_S, FanoutHub
from framecast.edge.guard import ConnectionGuard
from framecast.edge.metrics import EdgeMetrics
from framecast.edge.proxies import ForwardedFor, TrustedProxies
from framecast.edge.quota import PinQuota
from framecast.edge.session import ViewerSession, close_reason
from framecast.edge.settings import EdgeSettings
from framecast.edge.snapshot import SnapshotLimiter, redact_access_log, serve_snapshot
from framecast.edge.workers import AllWorkers, WorkerInfo, write_snapshot
from framecast.ladder import is_video, jpeg_tiers, tiers_for
from framecast.logs import RateLimitedLog, redact_url
from framecast.protocol import (
    ClientHello,
    ErrorMessage,
    ProtocolError,
    ServerHello,
    Status,
    encode_control,
    parse_viewer_message,
)

log = logging.getLogger("framecast.edge")

DEFAULT_STATIC_DIR = Path(__file__).parent / "static"
TRANSPORT_KEY = "framecast.transport"
_READY_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *REDIS_ERRORS)


class EdgeRuntime:
    """The live state of one edge replica (one per app)."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.metrics = EdgeMetrics()
        self.keys = Keys(settings.key_prefix)
        self.edge_id = settings.name
        # bounded: a join storm must not leave one idle Redis connection per concurrent handshake
        self.client = async_client(settings.redis_url, max_connections=16)
        self.reader_client = async_client(settings.redis_url, block_ms=settings.block_ms)
        self.hub = FanoutHub(self.client, self.reader_client, self.keys, self.metrics, edge_id=self.edge_id,
                             block_ms=settings.block_ms, reader_grace_s=settings.reader_grace_s,
                             demand_ttl_s=settings.demand_ttl_s, stall_after_s=settings.stall_after_s)
        self.sessions: set[ViewerSession] = set()
        # per-viewer counts (plain ints on each session) join the replica's counters at scrape time
        self.metrics.frames_sent.live = lambda: (((u[0], u[1]), u[2]) for u in self._unfolded())
        self.metrics.bytes_sent.live = lambda: (((u[0],), u[3]) for u in self._unfolded())
        self.metrics.control.live = lambda: ((("ack",), u[4]) for u in self._unfolded())
        self.admitted = 0  # connections past the limit checks (including ones still handshaking)
        self.per_ip: Counter[str] = Counter()
        # token-less connections waiting for their hello: counted apart, they hold no viewer slot
        self.pending_auth: Counter[str] = Counter()
        self.trusted = TrustedProxies.parse(settings.forwarded_allow_ips)
        self.guard = ConnectionGuard(settings, self.metrics, self.trusted)
        self.pin_quota = PinQuota(settings.pinned_tiers_per_ip)
        self.gone = RateLimitedLog(log, "viewers gone mid-handshake", interval=30.0)
        # keyframe requests of a stream tier, whoever asks (viewers, joins, gaps): at most one per interval
        self.hub.keyframes.limiter.interval_s = settings.keyframe_interval_s
        self.draining = False
        self.drain_started: float | None = None
        self.metrics_server: Any = None
        self._known_streams: set[str] = set()
        self.snapshot_limiter = SnapshotLimiter(settings.snapshot_rate, settings.snapshot_rate_per_ip)

    def _unfolded(self) -> list[tuple[str, str, int, int, int]]:
        return [s.unfolded() for s in tuple(self.sessions)]  # tuple(): a scrape may run on the metrics thread

    def viewers_by_stream(self) -> Counter[str]:
        return Counter(s.stream for s in self.sessions)

    def refresh_viewer_gauges(self) -> None:
        counts = self.viewers_by_stream()
        for stream in set(counts) | set(self._known_streams):
            self.metrics.viewers.labels(stream).set(counts.get(stream, 0))
        self._known_streams = set(counts) | self._known_streams
        self.metrics.connected_viewers.set(len(self.sessions))

    async def begin_drain(self) -> None:
        """Readiness fails from now on; viewers are told; new viewers are refused."""
        if self.draining:
            return
        self.draining = True
        self.drain_started = time.monotonic()
        self.metrics.draining.set(1)
        log.info("draining: /readyz fails, viewers closed in %.1fs", self.settings.drain_delay_s)
        for s in list(self.sessions):
            s.send_control(encode_control(Status("draining", "server restarting; reconnect soon")))

    async def close_all(self, code: int = C.CLOSE_SERVICE_RESTART, reason: str = "") -> None:
        sessions = list(self.sessions)
        await asyncio.gather(*(s.close(code, reason or C.CLOSE_REASONS[code]) for s in sessions),
                             return_exceptions=True)

    async def drain(self) -> None:
        """SIGTERM path: fail readiness, wait the drain delay, close viewers 1012, wait for them to go."""
        await self.begin_drain()
        await asyncio.sleep(self.settings.drain_delay_s)
        await self.close_all(C.CLOSE_SERVICE_RESTART, "server restarting, reconnect with jitter")
        deadline = time.monotonic() + max(0.5, self.settings.drain_timeout_s - self.settings.drain_delay_s - 1.0)
        while self.sessions and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll of a set
            await asyncio.sleep(0.05)
        for s in list(self.sessions):
            s.abort()


class ExposeTransport:
    """ASGI middleware: puts uvicorn's transport into the WebSocket scope.

    The sender needs the socket to read its unsent bytes (SIOCOUTQNSD) and to
    abort viewers that cannot take a close frame; ASGI has no standard way to
    reach it, uvicorn's `send` is a bound method of its protocol object.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            proto = getattr(send, "__self__", None)
            transport = getattr(proto, "transport", None)
            if transport is not None:
                scope[TRANSPORT_KEY] = (transport, proto)
        await self.app(scope, receive, send)


def create_app(settings: EdgeSettings | None = None, *, worker: WorkerInfo | None = None) -> FastAPI:
    settings = settings or EdgeSettings()
    runtime = EdgeRuntime(settings)
    registry = runtime.metrics.registry
    if worker is not None:  # one scrape answers for every worker of this replica, each labelled
        registry = CollectorRegistry(auto_describe=False)
        registry.register(AllWorkers(worker, runtime.metrics.registry))
        runtime.hub.on_tick.append(lambda: write_snapshot(worker, runtime.metrics.registry))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.hub.start()
        runtime.hub.on_tick.append(runtime.refresh_viewer_gauges)
        runtime.hub.on_tick.append(runtime.guard.check_fds)
        if settings.metrics_port and (worker is None or worker.index == 0):  # one metrics port per replica
            from prometheus_client import start_http_server

            runtime.metrics_server = start_http_server(settings.metrics_port, settings.metrics_host,
                                                       registry=registry)
        log.info("edge %s ready (redis %s)", runtime.edge_id, redact_url(settings.redis_url))
        try:
            yield
        finally:
            if runtime.sessions:
                await runtime.close_all(C.CLOSE_SERVICE_RESTART)
            await runtime.hub.close()
            if runtime.metrics_server is not None:
                server = runtime.metrics_server[0] if isinstance(runtime.metrics_server, tuple) \
                    else runtime.metrics_server
                with contextlib.suppress(Exception):
                    server.shutdown()
            for client in (runtime.client, runtime.reader_client):
                try:  # bounded: a Redis that went away mid-close must not hold the process
                    await asyncio.wait_for(client.aclose(), CLOSE_WAIT_S)
                except _READY_ERRORS as exc:  # TimeoutError or a Redis error
                    log.warning("closing a Redis client at shutdown: %s", type(exc).__name__)

    app = FastAPI(title="framecast edge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.add_middleware(ExposeTransport)
    redact_access_log()  # snapshot tokens may travel in the query string
    app.add_middleware(ForwardedFor, trusted=runtime.trusted)  # outermost: every route sees the real client
    static_dir = Path(settings.static_dir) if settings.static_dir else DEFAULT_STATIC_DIR

    # --- HTTP ------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "edge": runtime.edge_id, "viewers": len(runtime.sessions)}

    @app.get("/readyz")
    async def readyz() -> Response:
        if runtime.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        try:
            await asyncio.wait_for(runtime.client.ping(), timeout=1.0)
        except _READY_ERRORS as exc:
            return JSONResponse({"status": "redis unreachable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if settings.metrics_port:
            return PlainTextResponse(f"metrics are served on port {settings.metrics_port}\n", status_code=404)
        if settings.auth_secret and not auth.metrics_allowed(settings.auth_secret, settings.metrics_token,
                                                             auth.token_from_http(request.headers)):
            return _unauthorized(runtime, "metrics")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/streams")
    async def streams(request: Request) -> Response:
        grant: auth.Grant | None = None
        if settings.auth_secret:
            try:
                grant = auth.verify_grant(settings.auth_secret, auth.token_from_http(request.headers))
            except auth.AuthError:
                return _unauthorized(runtime, "streams")
        try:
            scored: list[tuple[Any, float]] = await runtime.client.zrange(  # type: ignore[assignment]
                runtime.keys.streams_index(), 0, -1, withscores=True)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n, _ in scored]
            pipe = runtime.client.pipeline(transaction=False)  # key by key: metas of streams span cluster slots
            for n in names:
                pipe.get(runtime.keys.meta(n))
            metas = await pipe.execute() if names else []
        except REDIS_ERRORS as exc:
            return JSONResponse({"error": f"bus unavailable: {type(exc).__name__}"}, status_code=503)
        now = wall_us()
        viewers = runtime.viewers_by_stream()
        out = []
        for (name, score), raw in zip(scored, metas, strict=True):
            stream = name.decode() if isinstance(name, bytes) else str(name)
            if raw is None:
                continue  # the meta expired: the source is gone
            if grant is not None and not grant.allows(stream):
                continue  # a token lists only the streams it names
            try:
                info = StreamInfo.from_json(raw)
            except (ValueError, KeyError, TypeError):
                continue
            age = (now - int(score)) / 1e6
            out.append({"stream": stream, "tiers": [t.to_json() for t in info.tiers], "fps": info.fps,
                        "model": info.model, "device": info.device, "source": redact_url(info.source),
                        "last_heartbeat_us": int(score), "live": age <= settings.stall_after_s,
                        "viewers": viewers.get(stream, 0)})
        return JSONResponse({"edge": runtime.edge_id, "streams": out})

    @app.get("/snapshot/{stream}.jpg")
    async def snapshot(request: Request, stream: str, tier: str | None = Query(None, max_length=32),
                       token: str | None = Query(None, max_length=4096)) -> Response:
        return await serve_snapshot(runtime, request, stream, tier, token)  # framecast.edge.snapshot

    @app.get("/", response_model=None)
    async def index() -> Response:
        page = static_dir / "index.html"
        if not page.is_file():
            return PlainTextResponse("viewer page not installed (no edge/static/index.html); "
                                     "frames are at /ws/{stream}\n", status_code=503)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static_dir, check_dir=False), name="static")

    # --- the viewer WebSocket --------------------------------------------
    @app.websocket("/ws/{stream}")
    async def viewer(ws: WebSocket, stream: str) -> None:
        try:
            await _serve_viewer(runtime, ws, stream)
        except (WebSocketDisconnect, OSError):
            runtime.gone.event("gone while admitted")  # a client's doing: one summary line, no traceback

    return app


def _unauthorized(runtime: EdgeRuntime, route: str) -> Response:
    runtime.metrics.rejected.labels("auth").inc()
    return PlainTextResponse(f"{route}: authentication failed: send Authorization: Bearer <token>\n",
                             status_code=401, headers={"WWW-Authenticate": 'Bearer realm="framecast"'})


REFUSALS = {  # close reason of each refusal for lack of a slot (all 1013)
    "too_many_viewers": C.CLOSE_REASONS[C.CLOSE_TRY_AGAIN_LATER],
    "per_ip_limit": "too many viewers from this address",
    "pending_auth_limit": "too many connections waiting to authenticate, try again later",
}


class Slots:
    """What one WebSocket holds while it lives: a viewer slot, or a place among token-less connections
    waiting for their hello (`max_pending_auth`, `pending_auth_per_ip`, `hello_timeout_s`)."""

    def __init__(self, runtime: EdgeRuntime, ip: str) -> None:
        self.runtime, self.ip = runtime, ip
        self.pending = self.viewer = False

    def take_pending(self) -> str | None:
        r, s = self.runtime, self.runtime.settings
        if sum(r.pending_auth.values()) >= s.max_pending_auth or r.pending_auth[self.ip] >= s.pending_auth_per_ip:
            return "pending_auth_limit"
        r.pending_auth[self.ip] += 1
        self.pending = True
        return None

    def take_viewer(self) -> str | None:
        """A viewer slot (giving back a pending place); the refusal reason when none is free."""
        r, s = self.runtime, self.runtime.settings
        self._release_pending()
        if r.admitted >= s.max_viewers:
            return "too_many_viewers"
        if s.viewers_per_ip and r.per_ip[self.ip] >= s.viewers_per_ip:
            return "per_ip_limit"
        r.admitted += 1
        r.per_ip[self.ip] += 1
        self.viewer = True
        return None

    def release(self) -> None:
        self._release_pending()
        if self.viewer:
            self.viewer = False
            self.runtime.admitted -= 1
            _decrement(self.runtime.per_ip, self.ip)

    def _release_pending(self) -> None:
        if self.pending:
            self.pending = False
            _decrement(self.runtime.pending_auth, self.ip)


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


async def _reject(runtime: EdgeRuntime, ws: WebSocket, code: int, reason: str, why: str,
                  subprotocol: str | None = None) -> None:
    """Refuse a viewer with a close code it can read (accept first, then close)."""
    runtime.metrics.rejected.labels(why).inc()
    runtime.metrics.closes.labels(str(code)).inc()
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect, TimeoutError):
        async with asyncio.timeout(2.0):
            if ws.application_state == WebSocketState.CONNECTING:
                await ws.accept(subprotocol=subprotocol)
            await ws.send_text(encode_control(ErrorMessage(code, close_reason(reason))))
            await ws.close(code, close_reason(reason))


async def _serve_viewer(runtime: EdgeRuntime, ws: WebSocket, stream: str) -> None:
    settings, metrics = runtime.settings, runtime.metrics
    headers = {k.lower(): v for k, v in ws.headers.items()}
    # 1. Origin, before the handshake completes: a refused browser gets HTTP 403
    if not auth.origin_allowed(headers.get("origin"), settings.origins):
        metrics.rejected.labels("origin").inc()
        await ws.close(C.CLOSE_POLICY_VIOLATION)
        return
    subprotocols = list(ws.scope.get("subprotocols") or [])
    subprotocol = auth.choose_subprotocol(subprotocols)
    ip = ws.client.host if ws.client else "?"
    # 2. limits: a viewer slot now, or (auth on, no token in the headers) a place among the connections
    # waiting for a token-carrying hello, counted apart so that they cannot lock viewers out
    if runtime.draining:
        await _reject(runtime, ws, C.CLOSE_SERVICE_RESTART, "server draining, reconnect", "draining", subprotocol)
        return
    slots = Slots(runtime, ip)
    pending = bool(settings.auth_secret) and not auth.token_from_headers(headers, subprotocols)
    why = slots.take_pending() if pending else slots.take_viewer()
    if why is not None:
        await _reject(runtime, ws, C.CLOSE_TRY_AGAIN_LATER, REFUSALS[why], why, subprotocol)
        return
    session: ViewerSession | None = None
    try:
        session, early = await _admit(runtime, ws, stream, headers, subprotocols, subprotocol, slots)
        if session is not None:
            await _run_viewer(session, early)
    finally:
        slots.release()
        if session is not None:
            session.fold_counts()  # before it leaves the set the scrape sums over
            runtime.sessions.discard(session)
            await session.finish()
            runtime.refresh_viewer_gauges()


async def _admit(runtime: EdgeRuntime, ws: WebSocket, stream: str, headers: dict[str, str],
                 subprotocols: list[str], subprotocol: str | None,
                 slots: Slots) -> tuple[ViewerSession | None, str | None]:
    """Admit a viewer: (its session, a first control message to handle) or (None, None) when refused."""
    settings, metrics = runtime.settings, runtime.metrics
    refused: tuple[None, None] = (None, None)
    # 3. known stream (a stream is known while its meta key exists)
    try:
        info = await runtime.hub.stream_info(stream) if C.STREAM_NAME_RE.fullmatch(stream) else None
    except REDIS_ERRORS:
        info = runtime.hub.cached_info(stream)
        if info is None:
            await _reject(runtime, ws, C.CLOSE_TRY_AGAIN_LATER, "bus unavailable, try again later",
                          "too_many_viewers", subprotocol)
            return refused
    ladder = info.tiers if info is not None else ()
    if info is None or not ladder:
        await _reject(runtime, ws, C.CLOSE_UNKNOWN_STREAM, f"unknown stream {stream[:64]!r}", "unknown_stream",
                      subprotocol)
        return refused
    await ws.accept(subprotocol=subprotocol)
    hello: ClientHello | None = None
    # 4. auth: a header token now, else the first message must be a hello carrying one
    if settings.auth_secret:
        token = auth.token_from_headers(headers, subprotocols)
        if not token:
            try:
                first = await asyncio.wait_for(ws.receive(), timeout=settings.hello_timeout_s)
            except TimeoutError:
                await _reject(runtime, ws, C.CLOSE_AUTH_FAILED, "authentication failed: no hello with a token",
                              "auth")
                return refused
            if first.get("type") == "websocket.disconnect":
                return refused
            text = first.get("text")
            try:
                msg = parse_viewer_message(text) if isinstance(text, str) else None
            except ProtocolError:
                msg = None
            if not isinstance(msg, ClientHello):
                await _reject(runtime, ws, C.CLOSE_AUTH_FAILED,
                              "authentication failed: first message must be a hello with a token", "auth")
                return refused
            hello = msg
            token = msg.token
        try:
            grant = auth.verify_token(settings.auth_secret, token, stream)
        except auth.AuthError as exc:
            await _reject(runtime, ws, C.CLOSE_AUTH_FAILED, f"authentication failed: {exc}", "auth")
            return refused
        if slots.pending:  # authenticated by its hello: from now on it needs a viewer slot
            why = slots.take_viewer()
            if why is not None:
                await _reject(runtime, ws, C.CLOSE_TRY_AGAIN_LATER, REFUSALS[why], why)
                return refused
        expires_at: float | None = grant.expires + auth.LEEWAY_S
    else:
        expires_at = None
    early: str | None = None
    if hello is None and any(is_video(t) for t in ladder):
        # the ladder has video tiers: the viewer's hello says whether it decodes them (wait briefly for it)
        try:
            first = await asyncio.wait_for(ws.receive(), timeout=settings.hello_wait_s)
        except TimeoutError:
            first = {}
        if first.get("type") == "websocket.disconnect":
            return refused
        if first.get("type") == "websocket.receive":
            early = first.get("text")
            if early is None:
                await _reject(runtime, ws, C.CLOSE_UNSUPPORTED_DATA, C.CLOSE_REASONS[C.CLOSE_UNSUPPORTED_DATA],
                              "bad_message")
                return refused
            try:
                msg = parse_viewer_message(early)
            except ProtocolError:
                msg = None  # the control loop closes it with 4400
            if isinstance(msg, ClientHello):
                hello, early = msg, None
    tiers = tiers_for(ladder, hello.codecs if hello is not None else None)
    if not tiers:
        await _reject(runtime, ws, C.CLOSE_BAD_MESSAGE, "no tier of this stream in a codec the viewer accepts",
                      "bad_message")
        return refused
    transport, proto = ws.scope.get(TRANSPORT_KEY, (None, None))
    session = ViewerSession(ws, hub=runtime.hub, settings=settings, metrics=metrics, stream=stream, tiers=tiers,
                            source_fps=info.fps, transport=transport, protocol=proto)
    session.expires_at = expires_at
    session.pin_quota, session.address = runtime.pin_quota, slots.ip
    try:
        if hello is not None:
            session.apply_hello(hello)
    except ProtocolError as exc:
        await _reject(runtime, ws, C.CLOSE_BAD_MESSAGE, str(exc), "auth")
        return refused
    # 5. hello first, then the stream's state; frames follow from the sender task
    await ws.send_text(encode_control(ServerHello(stream=stream, tiers=ladder, tier=session.feed_tier,
                                                  server=runtime.edge_id, fps=info.fps, ack=True)))
    live = runtime.hub.live.get(stream)
    if live is None:
        live = await _is_live(runtime, stream)
        runtime.hub.live.setdefault(stream, live)
    session.on_stream_state(live, "" if live else "source is not publishing")
    if runtime.draining:
        session.send_control(encode_control(Status("draining", "server restarting; reconnect soon")))
    try:
        first_frame = await runtime.hub.freshest(stream, [t.name for t in jpeg_tiers(tiers)])
    except REDIS_ERRORS:
        first_frame = None
    runtime.sessions.add(session)
    session.start(first_frame)
    runtime.refresh_viewer_gauges()
    return session, early


async def _is_live(runtime: EdgeRuntime, stream: str) -> bool:
    try:
        raw = await runtime.client.get(runtime.keys.heartbeat(stream))
    except REDIS_ERRORS:
        return False
    return raw is not None and raw.isdigit() and wall_us() - int(raw) <= runtime.settings.stall_after_s * 1e6


async def _run_viewer(session: ViewerSession, early: str | None) -> None:
    """The viewer runs on callbacks (frames from the bus readers, messages from its protocol); wait for its end."""
    if early is not None:  # a first message read while admitting
        session.on_text(early)
    await asyncio.shield(session.done)
