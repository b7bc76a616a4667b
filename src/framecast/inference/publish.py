"""Publishing to the bus: which tiers to encode (demand), XADD per frame, meta and heartbeat.

`DemandPolicy` is a pure decision fed with the demanded tiers and `now`:
- some edge demands tiers: encode and publish exactly those, every frame;
- no edge demands any tier: publish only the lowest tier (the last of the
  ladder), at `idle_fps`, so snapshots and a joining viewer's first frame stay
  fresh while no encoding is wasted;
- demand unknown for longer than `stale_after` (Redis away): as with no demand.

`FramePublisher` builds the wire messages (header stamped with `publish_us`)
and XADDs them in one pipelined round trip. When Redis is away it drops frames
(counted), logs at most one line per interval and retries with jittered back-off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis

from framecast import constants as C
from framecast.bus import REDIS_ERRORS, Backoff, BusPublisher, Keys, StreamInfo, now_us
from framecast.inference import metrics as M
from framecast.inference.encode import EncodedTier
from framecast.ladder import AnyTier
from framecast.logs import RateLimitedLog
from framecast.protocol import FrameHeader, ProtocolError, decode_header, encode_frame

log = logging.getLogger("framecast.inference.publish")


class DemandPolicy:
    """Decides per frame which ladder positions to encode (clock passed in, seconds)."""

    def __init__(self, n_tiers: int, *, idle_fps: float = 1.0, publish_all: bool = False,
                 stale_after: float = 3.0) -> None:
        self.n_tiers, self.publish_all, self.stale_after = n_tiers, publish_all, stale_after
        self.idle_interval = 1.0 / idle_fps if idle_fps > 0 else None
        self._demanded: frozenset[int] = frozenset()
        self._updated: float | None = None
        self._last_idle: float | None = None

    def update(self, demanded: set[int] | frozenset[int], now: float) -> None:
        """The tiers edges asked for, as read from Redis at `now`."""
        self._demanded, self._updated = frozenset(demanded), now

    def demanded(self, now: float) -> frozenset[int]:
        if self._updated is None or now - self._updated > self.stale_after:
            return frozenset()
        return self._demanded

    def select(self, now: float) -> list[int]:
        """Ladder positions to encode for a frame captured now; [] means skip the frame."""
        if self.publish_all:
            return list(range(self.n_tiers))
        demanded = self.demanded(now)
        if demanded:
            return sorted(demanded)
        if self.idle_interval is not None and (self._last_idle is None
                                               or now - self._last_idle >= self.idle_interval * 0.98):
            self._last_idle = now
            return [self.n_tiers - 1]
        return []


def newest_frame_id(client: redis.Redis, keys: Keys, stream: str, tiers: Sequence[str]) -> int | None:
    """The highest frame id stored in any tier of the stream (None: no frames), raising on Redis errors."""
    pipe = client.pipeline(transaction=False)
    for tier in tiers:
        pipe.xrevrange(keys.frames(stream, tier), "+", "-", count=1)
    newest: int | None = None
    for entries in pipe.execute():
        if not entries:
            continue
        message = entries[0][1].get(C.FRAME_FIELD)
        try:
            frame_id = decode_header(message).frame_id if message else None
        except ProtocolError:
            continue
        if frame_id is not None and (newest is None or frame_id > newest):
            newest = frame_id
    return newest


MAX_CARRIED = 8  # video frames carried past a busy publisher; beyond, they are lost and an IDR heals the chain


@dataclass(slots=True)
class EncodedFrame:
    frame_id: int
    capture_us: int
    tiers: list[EncodedTier]
    # video tiers of earlier frames displaced while the publisher was busy, oldest first: published before
    # this frame, since its video tiers reference them (a JPEG tier needs only its newest frame)
    earlier: list[EncodedFrame] = field(default_factory=list)


def carry_video(displaced: EncodedFrame, newer: EncodedFrame) -> EncodedFrame | None:
    """`newer` displaced `displaced` from the publish slot: carry the displaced video tiers into `newer`.

    A P-frame is encoded on top of the frame before it, so a video frame that never reaches Redis breaks
    every picture after it until an IDR. Returns what is lost (its JPEG tiers), None when nothing is; past
    `MAX_CARRIED` the carried frames are lost too, with `newer`'s video (the encoder is told: an IDR next).
    """
    video = [t for t in displaced.tiers if t.codec != C.CODEC_JPEG]
    jpeg = [t for t in displaced.tiers if t.codec == C.CODEC_JPEG]
    chain = [*displaced.earlier, EncodedFrame(displaced.frame_id, displaced.capture_us, video)] if video \
        else displaced.earlier
    if len(chain) + len(newer.earlier) > MAX_CARRIED:
        lost = [t for f in chain for t in f.tiers] + [t for t in newer.tiers if t.codec != C.CODEC_JPEG]
        newer.tiers = [t for t in newer.tiers if t.codec == C.CODEC_JPEG]
        return EncodedFrame(displaced.frame_id, displaced.capture_us, jpeg + lost)
    newer.earlier = [*chain, *newer.earlier]
    return EncodedFrame(displaced.frame_id, displaced.capture_us, jpeg) if jpeg else None


class FramePublisher:
    """XADDs encoded frames; survives Redis going away (drops, counts, backs off, resumes)."""

    def __init__(self, client: redis.Redis, stream: str, keys: Keys, ladder: Sequence[AnyTier], *, maxlen: int,
                 ids_synced: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = BusPublisher(client, stream, keys=keys, maxlen=maxlen)
        self.client, self.stream, self.keys, self.ladder = client, stream, keys, tuple(ladder)
        self.clock = clock
        self.backoff = Backoff(base=0.1, cap=2.0)
        self.retry_at = 0.0
        self.connected = True
        # frame ids must grow across restarts: when the newest stored id was unknown at start, look again
        # before the first publish and shift ids above it
        self.ids_synced = ids_synced
        self.id_offset = 0
        self.last_frame_id = -1  # the newest frame id handed to publish (before the offset)
        self._errors = RateLimitedLog(log, "redis publish failures (frames dropped)", interval=5.0)

    def publish(self, frame: EncodedFrame) -> bool:
        """XADD the frame (after the video frames it carries, in order); False: not (all) published."""
        for earlier in frame.earlier:
            if not self._publish_one(earlier):
                return False
        return self._publish_one(frame)

    def _publish_one(self, frame: EncodedFrame) -> bool:
        if frame.frame_id <= self.last_frame_id:  # ids only grow in a stream, whatever overtook what
            M.drop("reordered", "publish")
            return False
        now = self.clock()
        if now < self.retry_at:
            M.drop("redis_down", "publish")
            return False
        start = time.perf_counter()
        try:
            if not self.ids_synced:
                self._sync_ids(frame.frame_id)
            frame_id = frame.frame_id + self.id_offset
            publish_us = now_us()
            messages = {
                t.tier.name: encode_frame(FrameHeader(frame_id=frame_id, capture_us=frame.capture_us, width=t.width,
                                                      height=t.height, tier=t.index, codec=t.codec,
                                                      quality=t.quality, flags=t.flags,
                                                      publish_us=publish_us), t.payload)
                for t in frame.tiers
            }
            self.last_frame_id = frame.frame_id
            self.bus.publish(messages, frame.capture_us)
        except REDIS_ERRORS as exc:
            M.REDIS_ERRORS.labels("publish").inc()
            M.DROPPED.labels("redis_error").inc()
            M.FRAMES.labels("publish", "error").inc()
            self._errors.event(type(exc).__name__)
            self.retry_at = self.clock() + self.backoff.next_delay()
            if self.connected:
                log.warning("redis unavailable, dropping frames and retrying with back-off: %s", exc)
            self.connected = False
            return False
        if not self.connected:
            log.info("redis is back, publishing resumed")
        self.connected = True
        self.backoff.reset()
        M.STAGE_SECONDS.labels("publish").observe(time.perf_counter() - start)
        M.FRAMES.labels("publish", "ok").inc()
        M.CAPTURE_TO_PUBLISH_SECONDS.observe(max(0.0, (now_us() - frame.capture_us) / 1e6))
        for t in frame.tiers:
            M.PUBLISHED.labels(t.tier.name).inc()
        return True

    def _sync_ids(self, next_id: int) -> None:
        newest = newest_frame_id(self.client, self.keys, self.stream, [t.name for t in self.ladder])
        if newest is not None and next_id <= newest:
            self.id_offset = newest + 1 - next_id
            log.info("frame ids continue above %d stored in redis (offset %d)", newest, self.id_offset)
        self.ids_synced = True


class DemandWatcher:
    """Reads the demand keys every `poll_s` and refreshes meta + heartbeat every `heartbeat_s`.

    Runs in its own thread so that no Redis round trip for demand ever sits on the frame path.
    The heartbeat says "frames are flowing": it is refreshed while `alive()` is true (the
    pipeline moved a frame recently, whether or not anyone watches) and stops when the source
    or the model is stuck, so an edge tells a stalled stream from an idle or slow one.
    """

    def __init__(self, client: redis.Redis, stream: str, keys: Keys, ladder: Sequence[AnyTier], policy: DemandPolicy,
                 info: StreamInfo, *, poll_s: float = 0.25, heartbeat_s: float = 1.0,
                 on_tick: Callable[[], None] | None = None, alive: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = BusPublisher(client, stream, keys=keys, maxlen=1)
        self.names = [t.name for t in ladder]
        self.policy, self.info = policy, info
        self.poll_s, self.heartbeat_s = poll_s, heartbeat_s
        self.on_tick, self.alive, self.clock = on_tick, alive, clock
        self.client, self.meta_key = client, keys.meta(stream)
        self.backoff = Backoff(base=0.2, cap=2.0)
        self._next_heartbeat = 0.0
        self._errors = RateLimitedLog(log, "redis demand/heartbeat failures", interval=5.0)
        self._announced: frozenset[int] | None = None

    def tick(self) -> float:
        """One round: returns how long to wait before the next."""
        now = self.clock()
        try:
            if now >= self._next_heartbeat:
                if self.on_tick is not None:
                    self.on_tick()
                if self.alive is None or self.alive():
                    self.bus.heartbeat(self.info)
                else:  # keep the ladder announced, but let the heartbeat age: the stream is stalled
                    self.client.set(self.meta_key, self.info.to_json(), ex=self.bus.meta_ttl_s)
                self._next_heartbeat = now + self.heartbeat_s
            names = self.bus.demanded(self.names)
        except REDIS_ERRORS as exc:
            M.REDIS_ERRORS.labels("demand").inc()
            self._errors.event(type(exc).__name__)
            self._next_heartbeat = 0.0  # re-announce as soon as Redis is back
            return self.backoff.next_delay()
        self.backoff.reset()
        demanded = frozenset(i for i, name in enumerate(self.names) if name in names)
        self.policy.update(demanded, self.clock())
        if demanded != self._announced:
            for i, name in enumerate(self.names):
                M.DEMANDED.labels(name).set(1 if i in demanded else 0)
            log.info("demanded tiers: %s", ", ".join(self.names[i] for i in sorted(demanded)) or "none (idle)")
            self._announced = demanded
        return self.poll_s
