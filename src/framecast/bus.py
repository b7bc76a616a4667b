"""The Redis Streams bus between the inference service and the edges.

Owns the key layout (documented in docs/protocol.md), the publish path
(`XADD ... MAXLEN ~ N`, pipelined with the stream's heartbeat) and the read
path (`XREAD BLOCK` from the newest entry, resuming at the newest entry after a
reconnect so that a viewer never gets a burst of stale frames).

Key layout, with the stream name as a Redis Cluster hash tag:

    {prefix}streams                     ZSET  stream -> last heartbeat (unix µs)
    {prefix}{{stream}}:frames:{tier}    STREAM entries {m: wire frame message}
    {prefix}{{stream}}:meta             STRING JSON stream description (EX)
    {prefix}{{stream}}:heartbeat        STRING last publish time in µs (EX)
    {prefix}{{stream}}:demand:{tier}    STRING edge id wanting that tier (EX)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from framecast import constants as C
from framecast.protocol import ProtocolError, decode_header

log = logging.getLogger("framecast.bus")

# redis-py raises these when the server is away or the socket broke
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError,
                                                 redis.exceptions.BusyLoadingError, redis.ResponseError)


@dataclass(frozen=True, slots=True)
class Keys:
    """Redis key names for one key prefix."""

    prefix: str = C.DEFAULT_KEY_PREFIX

    def streams_index(self) -> str:
        return f"{self.prefix}{C.STREAMS_INDEX_SUFFIX}"

    def frames(self, stream: str, tier: str) -> str:
        return f"{self.prefix}{{{stream}}}:frames:{tier}"

    def meta(self, stream: str) -> str:
        return f"{self.prefix}{{{stream}}}:meta"

    def heartbeat(self, stream: str) -> str:
        return f"{self.prefix}{{{stream}}}:heartbeat"

    def demand(self, stream: str, tier: str) -> str:
        return f"{self.prefix}{{{stream}}}:demand:{tier}"

    def keyframe_request(self, stream: str, tier: str) -> str:
        return f"{self.prefix}{{{stream}}}:keyframe:{tier}"


def now_us() -> int:
    """Wall-clock time in integer microseconds (the clock of capture_us)."""
    return time.time_ns() // 1000


class Backoff:
    """Jittered exponential back-off ("full jitter"); pure apart from its RNG."""

    def __init__(self, base: float = 0.1, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that redis-py swallowed.

    Python 3.11's `asyncio.wait_for` (used by redis-py around its socket I/O) can
    lose a cancellation that lands as the I/O completes; the task's
    `cancelling()` count still says it was asked to stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def sync_client(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A blocking client for threads of the inference service."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                health_check_interval=10)


def async_client(url: str, *, block_ms: int = 1000, timeout: float = 2.0,
                 max_connections: int | None = None) -> aioredis.Redis:
    """An asyncio client whose socket timeout outlives an XREAD BLOCK of `block_ms`.

    With `max_connections`, the pool is capped: a burst of concurrent commands
    (a join storm) waits up to `timeout` for a free connection instead of
    opening one connection per command and keeping them all idle afterwards.
    """
    # redis-py's socket_timeout applies to the blocking read too: it must exceed the block time
    options: dict[str, Any] = {"socket_timeout": block_ms / 1000 + timeout, "socket_connect_timeout": timeout,
                               "health_check_interval": 10}
    if max_connections is None:
        return aioredis.Redis.from_url(url, **options)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout,
                                                    **options)
    return aioredis.Redis(connection_pool=pool)


@dataclass(slots=True)
class StreamInfo:
    """What the inference service announces about a stream (the meta key)."""

    stream: str
    tiers: list[dict[str, Any]]
    fps: float
    model: str = ""
    device: str = ""
    source: str = ""
    started_us: int = 0

    def to_json(self) -> str:
        return json.dumps({"stream": self.stream, "tiers": self.tiers, "fps": self.fps, "model": self.model,
                           "device": self.device, "source": self.source, "started_us": self.started_us})

    @classmethod
    def from_json(cls, raw: bytes | str) -> StreamInfo:
        obj = json.loads(raw)
        return cls(stream=str(obj["stream"]), tiers=list(obj["tiers"]), fps=float(obj["fps"]),
                   model=str(obj.get("model", "")), device=str(obj.get("device", "")),
                   source=str(obj.get("source", "")), started_us=int(obj.get("started_us", 0)))


class BusPublisher:
    """Publishes frames of one stream (blocking client; call from a worker thread)."""

    def __init__(self, client: redis.Redis, stream: str, *, keys: Keys, maxlen: int, meta_ttl_s: int = 10) -> None:
        self.client, self.stream, self.keys = client, stream, keys
        self.maxlen, self.meta_ttl_s = maxlen, meta_ttl_s

    def publish(self, messages: dict[str, bytes], capture_us: int) -> None:
        """XADD one wire message per tier and refresh the heartbeat in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for tier, message in messages.items():
            pipe.xadd(self.keys.frames(self.stream, tier), {C.FRAME_FIELD: message}, maxlen=self.maxlen,
                      approximate=True)
        self._heartbeat(pipe, capture_us)
        pipe.execute()

    def heartbeat(self, info: StreamInfo | None = None) -> None:
        pipe = self.client.pipeline(transaction=False)
        self._heartbeat(pipe, now_us())
        if info is not None:
            pipe.set(self.keys.meta(self.stream), info.to_json(), ex=self.meta_ttl_s)
        pipe.execute()

    def _heartbeat(self, pipe: Any, t_us: int) -> None:
        pipe.set(self.keys.heartbeat(self.stream), t_us, ex=self.meta_ttl_s)
        pipe.zadd(self.keys.streams_index(), {self.stream: t_us})

    def demanded(self, tiers: list[str]) -> set[str]:
        """The tiers some edge has asked for recently."""
        pipe = self.client.pipeline(transaction=False)
        for tier in tiers:
            pipe.exists(self.keys.demand(self.stream, tier))
        return {tier for tier, n in zip(tiers, pipe.execute(), strict=True) if n}


async def newest_entry(client: aioredis.Redis, key: str) -> tuple[bytes, bytes] | None:
    """The newest (entry id, wire message) of a frames stream, if any."""
    entries: Any = await client.xrevrange(key, "+", "-", count=1)
    if not entries:
        return None
    entry_id, fields = entries[0]
    return bytes(entry_id), bytes(fields[C.FRAME_FIELD])


def captured_within(message: bytes, max_age_us: int | None) -> bool:
    """Whether a stored wire message was captured at most `max_age_us` ago (None: any age will do)."""
    if max_age_us is None:
        return True
    try:
        return now_us() - decode_header(message).capture_us <= max_age_us
    except ProtocolError:
        return False


async def read_frames(client: aioredis.Redis, key: str, *, block_ms: int = 1000,
                      backoff: Backoff | None = None, on_error: Any = None,
                      max_age_us: int | None = None) -> AsyncIterator[bytes]:
    """Yield wire messages of one frames stream forever, newest first then live.

    Starts with the newest stored entry (so a new viewer gets a picture at once)
    unless it was captured more than `max_age_us` ago (a tier nobody encodes
    any more keeps its last entries: they are no start point), then follows
    with `XREAD BLOCK`. When Redis goes away it retries with jittered back-off
    and resumes at the newest entry, skipping the backlog. JPEG tiers only:
    video tiers need every entry (`framecast.video.reader.read_video_frames`).
    `on_error(exc)` is called for every failed attempt (for metrics and logs).
    """
    backoff = backoff or Backoff()
    last_id: bytes | None = None
    while True:
        try:
            raise_if_cancelling()
            if last_id is None:
                newest = await newest_entry(client, key)
                if newest is None:
                    last_id = b"$"
                else:
                    last_id = newest[0]
                    if captured_within(newest[1], max_age_us):
                        yield newest[1]
            # "$" means "only entries added after this call"
            reply: Any = await client.xread({key: last_id}, count=16, block=block_ms)
            raise_if_cancelling()
            backoff.reset()
            if not reply:
                if last_id == b"$":
                    last_id = None  # nothing yet: look for a first entry again
                continue
            entries = reply[0][1]
            last_id = bytes(entries[-1][0])
            # deliver only the newest of a batch: older ones are stale on arrival
            yield bytes(entries[-1][1][C.FRAME_FIELD])
        except asyncio.CancelledError:
            raise
        except REDIS_ERRORS as exc:
            if on_error is not None:
                on_error(exc)
            last_id = None  # after a reconnect resume at the newest entry, never replay the backlog
            await asyncio.sleep(backoff.next_delay())
