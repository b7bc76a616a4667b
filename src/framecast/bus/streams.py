"""The bus's streams: Redis key names, the stream description (meta) and the publisher.

Key layout, with the stream name as a Redis Cluster hash tag (docs/protocol.md):

    {prefix}streams                     ZSET  stream -> last heartbeat (unix µs)
    {prefix}{{stream}}:frames:{tier}    STREAM entries {m: wire frame message}
    {prefix}{{stream}}:meta             STRING JSON stream description (EX)
    {prefix}{{stream}}:heartbeat        STRING last publish time in µs (EX)
    {prefix}{{stream}}:demand:{tier}    STRING edge id wanting that tier (EX)
    {prefix}{{stream}}:keyframe:{tier}  STRING a pending keyframe request (EX, see bus.signals)

The publish path is `XADD ... MAXLEN ~ N`, pipelined with the stream's heartbeat.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis

from framecast import constants as C
from framecast.bus.client import REDIS_ERRORS
from framecast.ladder import announced_tiers
from framecast.protocol import TierInfo

log = logging.getLogger("framecast.bus")


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


@dataclass(slots=True)
class StreamInfo:
    """What the inference service announces about a stream (the meta key)."""

    stream: str
    tiers: tuple[TierInfo, ...]  # the ladder in header-index order, as announced (`Tier.describe`)
    fps: float
    model: str = ""
    device: str = ""
    source: str = ""
    started_us: int = 0

    def to_json(self) -> str:
        return json.dumps({"stream": self.stream, "tiers": [t.to_json() for t in self.tiers], "fps": self.fps,
                           "model": self.model, "device": self.device, "source": self.source,
                           "started_us": self.started_us})

    @classmethod
    def from_json(cls, raw: bytes | str) -> StreamInfo:
        obj = json.loads(raw)
        return cls(stream=str(obj["stream"]), tiers=announced_tiers(obj["tiers"]), fps=float(obj["fps"]),
                   model=str(obj.get("model", "")), device=str(obj.get("device", "")),
                   source=str(obj.get("source", "")), started_us=int(obj.get("started_us", 0)))


class BusPublisher:
    """Publishes frames of one stream (blocking client; call from a worker thread)."""

    def __init__(self, client: redis.Redis, stream: str, *, keys: Keys, maxlen: int, meta_ttl_s: int = 10) -> None:
        self.client, self.stream, self.keys = client, stream, keys
        self.maxlen, self.meta_ttl_s = maxlen, meta_ttl_s

    def publish(self, messages: dict[str, bytes], capture_us: int) -> None:
        """XADD one wire message per tier and refresh the heartbeat in one round trip (all keys of one slot)."""
        pipe = self.client.pipeline(transaction=False)
        for tier, message in messages.items():
            pipe.xadd(self.keys.frames(self.stream, tier), {C.FRAME_FIELD: message}, maxlen=self.maxlen,
                      approximate=True)
        pipe.set(self.keys.heartbeat(self.stream), capture_us, ex=self.meta_ttl_s)
        pipe.execute()

    def heartbeat(self, info: StreamInfo | None = None) -> None:
        """Refresh the stream's heartbeat (and meta), then its entry in the streams index.

        The index is one key for all streams: in a Redis Cluster it lives on one
        master, so it is written apart and best effort, and a master failing over
        never stops the heartbeat of a stream whose keys live elsewhere.
        """
        t_us = now_us()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.heartbeat(self.stream), t_us, ex=self.meta_ttl_s)
        if info is not None:
            pipe.set(self.keys.meta(self.stream), info.to_json(), ex=self.meta_ttl_s)
        pipe.execute()
        try:
            self.client.zadd(self.keys.streams_index(), {self.stream: t_us})
        except REDIS_ERRORS as exc:
            log.debug("streams index not updated: %s", exc)

    def demanded(self, tiers: list[str]) -> set[str]:
        """The tiers some edge has asked for recently."""
        pipe = self.client.pipeline(transaction=False)
        for tier in tiers:
            pipe.exists(self.keys.demand(self.stream, tier))
        return {tier for tier, n in zip(tiers, pipe.execute(), strict=True) if n}
