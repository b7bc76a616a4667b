"""Signals from the edges to the inference service: keyframe requests (here) and demand.

Demand is one key per (stream, tier), `Keys.demand(stream, tier)`: edges SET it
with a short expiry while viewers watch the tier (`edge.fanout`), the inference
service encodes only the tiers whose key exists (`BusPublisher.demanded`).

Keyframe requests: edges ask, the inference service's encoders answer with an IDR.

One key per (stream, tier), `Keys.keyframe_request(stream, tier)`
(`framecast:{demo}:keyframe:video-high`). An edge that needs a keyframe (a
viewer joined, or skipped frames) SETs it with a short expiry (the value is
`"<request µs> <edge id>"`, for the request-to-IDR delay and for debugging);
the encoder side reads and deletes it with GETDEL, all tiers in one pipelined
round trip, at most once per `min_interval_s`, and calls
`H264Encoder.request_keyframe()` for each tier found. Many viewers and many
edges asking at once collapse into one key, hence one IDR.

Both sides are rate-limited by `RequestLimiter`, a pure helper with `now`
passed in: `AsyncKeyframeRequester` on the edge (asyncio, never awaited by a
viewer), `KeyframeRequestPoller` in the inference service's encode thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from framecast.bus.client import REDIS_ERRORS
from framecast.bus.streams import Keys, now_us
from framecast.logs import RateLimitedLog

log = logging.getLogger("framecast.bus.signals")

DEFAULT_REQUEST_TTL_S = 2  # a request nobody consumed in this time is stale (no encoder for that tier)


@dataclass(slots=True)
class RequestLimiter:
    """At most one event per `interval_s` per key; `now` in seconds on any monotonic clock."""

    interval_s: float
    _last: dict[str, float] = field(default_factory=dict)
    allowed: int = 0
    limited: int = 0

    def allow(self, key: str, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self.limited += 1
            return False
        self._last[key] = now
        self.allowed += 1
        return True


def _value(edge_id: str, request_us: int) -> str:
    return f"{request_us} {edge_id}"


def parse_request_value(raw: bytes | str | None) -> int | None:
    """The request time (µs) of a keyframe request value, None if absent or unreadable."""
    if raw is None:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    head = text.split(" ", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    """A consumed request: which tier, and when it was made (µs, wall clock; None if unknown)."""

    tier: str
    request_us: int | None


def _collect(tiers: Sequence[str], values: Iterable[Any]) -> list[KeyframeRequest]:
    out: list[KeyframeRequest] = []
    for tier, raw in zip(tiers, values, strict=True):
        if raw is not None and not isinstance(raw, Exception):
            out.append(KeyframeRequest(tier, parse_request_value(raw)))
    return out


# --- edge side -------------------------------------------------------------

class AsyncKeyframeRequester:
    """Edge side (asyncio): SET the request key, at most once per `min_interval_s` per (stream, tier)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, *, edge_id: str, min_interval_s: float = 0.25,
                 ttl_s: int = DEFAULT_REQUEST_TTL_S) -> None:
        self.client, self.keys, self.edge_id, self.ttl_s = client, keys, edge_id, ttl_s
        self.limiter = RequestLimiter(min_interval_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self._errors = RateLimitedLog(log, "keyframe request errors")
        self.failed = 0

    def request_nowait(self, stream: str, tier: str, now: float | None = None) -> bool:
        """For code that must not await (a viewer's `offer`): rate-limit now, SET in a background task.

        Redis errors are counted (`failed`) and logged rate-limited, never raised: the viewer asks
        again after its own interval. `now` defaults to `time.monotonic()`.
        """
        key = self.keys.keyframe_request(stream, tier)
        if not self.limiter.allow(key, time.monotonic() if now is None else now):
            return False
        task = asyncio.get_running_loop().create_task(self._set(key), name=f"keyframe-request-{stream}-{tier}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _set(self, key: str) -> None:
        try:
            await self.client.set(key, _value(self.edge_id, now_us()), ex=self.ttl_s)
        except REDIS_ERRORS as exc:
            self.failed += 1
            self._errors.event(type(exc).__name__)

    async def drain(self) -> None:
        """Wait for the requests still in flight (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


# --- encoder side ----------------------------------------------------------

class KeyframeRequestPoller:
    """Inference side (blocking client, call from the encode/publish thread): consume pending requests.

    `poll(tiers, now)` GETDELs the request keys of `tiers` (the video tiers being encoded) in one
    pipelined round trip, at most once per `min_interval_s`; it returns the requests found.
    """

    def __init__(self, client: redis.Redis, keys: Keys, stream: str, *, min_interval_s: float = 0.02) -> None:
        self.client, self.keys, self.stream = client, keys, stream
        self.min_interval_s = min_interval_s
        self._last: float | None = None
        self.polls = 0
        self.consumed = 0

    def poll(self, tiers: Sequence[str], now: float) -> list[KeyframeRequest]:
        if not tiers or (self._last is not None and now - self._last < self.min_interval_s):
            return []
        self._last = now
        pipe = self.client.pipeline(transaction=False)
        for tier in tiers:
            pipe.getdel(self.keys.keyframe_request(self.stream, tier))
        found = _collect(tiers, pipe.execute(raise_on_error=False))
        self.polls += 1
        self.consumed += len(found)
        return found
