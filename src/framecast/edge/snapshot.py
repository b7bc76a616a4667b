"""`/snapshot/{stream}.jpg`: a fresh JPEG of a stream at any time, for those allowed, within rate limits.

* Token: with auth on, the same token as the WebSocket, from an
  `Authorization: Bearer` header or, for an `<img src>` (which sends no
  header), a `token` query parameter; `redact_access_log` keeps it out of
  uvicorn's access log.
* Freshness: only a frame captured within the stall threshold is served. With
  `tier`, that tier; without, the best JPEG tier (ladder order) that has a
  fresh frame, named in the `X-Tier` header. When none has one (the inference
  service encodes only demanded tiers), the tier is demanded through the hub
  and the request waits up to `snapshot_wait_s` for its first frame.
* Limits: `snapshot_rate_per_ip` per client address and `snapshot_rate` per
  replica (token buckets, burst twice the rate). A request over either is
  answered from a fresh frame this replica already holds (no Redis command, no
  demand), else 429 with `Retry-After`: a burst of snapshots (the probe's
  throughput test) costs the bus nothing once the first one started the tier.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from framecast import constants as C
from framecast.bus import REDIS_ERRORS
from framecast.edge import auth
from framecast.edge.pacing import TokenBucket
from framecast.ladder import jpeg_tiers
from framecast.protocol import ProtocolError, decode_frame

if TYPE_CHECKING:
    from framecast.edge.app import EdgeRuntime

_MAX_BUCKETS = 10_000
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")


@dataclass
class SnapshotLimiter:
    """Per-address and per-replica token buckets (clock passed in, integer microseconds)."""

    rate: float
    per_ip_rate: float
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _global: TokenBucket | None = None

    def check(self, ip: str, now: int) -> Literal["ok", "cached_only"]:
        """"ok": serve it in full; "cached_only": over a limit, serve only a frame already held."""
        bucket = self.buckets.get(ip)
        if bucket is None:
            if len(self.buckets) >= _MAX_BUCKETS:  # addresses come from the network: never let them grow
                self.buckets.clear()
            bucket = self.buckets[ip] = TokenBucket(self.per_ip_rate, max(1.0, 2 * self.per_ip_rate), now)
        if self._global is None:
            self._global = TokenBucket(self.rate, max(1.0, 2 * self.rate), now)
        if not bucket.take(now) or not self._global.take(now):
            return "cached_only"
        return "ok"


def request_token(request: Request, query_token: str | None) -> str:
    """The token of a snapshot request: `Authorization: Bearer` header first, else the `token` query parameter."""
    header = auth.token_from_headers({"authorization": request.headers.get("authorization", "")}, [])
    return header or (query_token or "")


async def serve_snapshot(runtime: EdgeRuntime, request: Request, stream: str, tier: str | None,
                         query_token: str | None) -> Response:
    settings, hub = runtime.settings, runtime.hub
    ip = request.client.host if request.client else "?"
    mode = runtime.snapshot_limiter.check(ip, time.monotonic_ns() // 1000)
    if settings.auth_secret:
        try:
            auth.verify_token(settings.auth_secret, request_token(request, query_token), stream)
        except auth.AuthError as exc:
            runtime.metrics.rejected.labels("auth").inc()
            return PlainTextResponse(f"authentication failed: {exc}; send Authorization: Bearer <token> "
                                     "or ?token=\n", status_code=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="framecast"'})
    if not C.STREAM_NAME_RE.fullmatch(stream):
        return PlainTextResponse("unknown stream\n", status_code=404)
    try:
        info = await hub.stream_info(stream) if mode == "ok" else hub.cached_info(stream)
    except REDIS_ERRORS:
        info = hub.cached_info(stream)
    if info is None:
        if mode != "ok":
            return _too_many()
        return PlainTextResponse("unknown stream\n", status_code=404)
    names = [t.name for t in jpeg_tiers(info.tiers)]
    if not names:
        return PlainTextResponse("stream has no JPEG tier\n", status_code=404)
    if tier is not None and tier not in names:
        return PlainTextResponse(f"unknown tier; this stream's JPEG tiers are {names}\n", status_code=404)
    wanted = [tier] if tier is not None else names
    try:
        found = await hub.snapshot_frame(stream, wanted, wait_s=settings.snapshot_wait_s,
                                         cached_only=mode != "ok")
    except REDIS_ERRORS:
        return PlainTextResponse("bus unavailable\n", status_code=503, headers={"Retry-After": "1"})
    if found is None:
        if mode != "ok":
            return _too_many()
        return PlainTextResponse(f"no fresh frame of {wanted[0]!r} within {settings.snapshot_wait_s:g}s "
                                 "(is the source publishing?)\n", status_code=503, headers={"Retry-After": "1"})
    name, frame = found
    try:
        decoded = decode_frame(frame.data)
    except ProtocolError:
        return PlainTextResponse("bad frame on the bus\n", status_code=502)
    if decoded.header.codec != C.CODEC_JPEG:
        return PlainTextResponse("tier is not JPEG\n", status_code=415)
    h = decoded.header
    return Response(decoded.payload, media_type="image/jpeg",
                    headers={"Cache-Control": "no-store", "X-Frame-Id": str(h.frame_id),
                             "X-Capture-Us": str(h.capture_us), "X-Tier": name})


def _too_many() -> Response:
    return PlainTextResponse("too many snapshot requests, slow down\n", status_code=429, headers={"Retry-After": "1"})


class RedactTokens(logging.Filter):
    """Blanks `token=` query values in uvicorn's access log lines (the path is the record's third argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and "token=" in a for a in args):
            record.args = tuple(_TOKEN_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in args)
        return True


def redact_access_log() -> None:
    """Install `RedactTokens` on uvicorn's access logger (once per process)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())
