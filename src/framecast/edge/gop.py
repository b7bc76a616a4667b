"""GOP-aware sending of an inter-frame (H.264) tier to one viewer, and the shared last-GOP cache.

A JPEG viewer can skip any frame: the edge sends the newest one. An H.264
P-frame only decodes on top of the frame before it, so for a video tier the
rules are different:

* frames go out in order, from a keyframe on; once a frame of the chain is
  dropped, every P-frame after it is skipped until the next keyframe
  ("waiting for keyframe"), and a keyframe is requested;
* a viewer that falls behind (its queue holds `max_queue_frames`, or its
  oldest queued frame has waited `max_queue_delay_us`) has its queue flushed
  and waits for a keyframe, which it asks for; a keyframe that arrives while
  `catch_up_frames` frames are queued replaces them (a free catch-up);
* a joining viewer starts at a keyframe: the cached last keyframe and the
  frames after it when that replay is short (`max_replay_frames`,
  `max_replay_bytes`), else the cached keyframe alone for an instant picture
  plus a request for a fresh IDR, or, with an empty cache, a request only;
* keyframe requests are rate-limited per viewer (`keyframe_request_interval_us`)
  and repeated at that interval while the viewer still waits.

Everything here is pure: no I/O, no clock (every method takes `now` in integer
microseconds), generic in the queued item (the edge's shared `BusFrame`). The
pacing (ack window, socket budget) stays the edge's: it calls `pop` when the
link can take a frame. A JPEG tier fits the same queue with every frame a
keyframe and `catch_up_frames=1` (newest frame wins).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

Reason = Literal["in-order", "keyframe", "caught-up", "fell-behind", "waiting-for-keyframe", "duplicate",
                 "join-replay", "join-keyframe-only", "join-wait", "chain-broken"]
DropReason = Literal["gop_wait", "behind", "catch_up", "chain_broken"]
DROP_REASONS: tuple[DropReason, ...] = ("gop_wait", "behind", "catch_up", "chain_broken")


@dataclass(frozen=True, slots=True)
class GopConfig:
    max_queue_frames: int = 48  # at least max_replay_frames, so a join replay fits
    max_queue_delay_us: int = 400_000
    catch_up_frames: int = 2  # a keyframe arriving while this many frames wait replaces them
    keyframe_request_interval_us: int = 500_000
    # a replay waits in the queue behind the ack window: keep it well inside max_queue_delay_us
    max_replay_frames: int = 15
    max_replay_bytes: int = 192 * 1024

    def __post_init__(self) -> None:
        if self.max_queue_frames < 1 or self.catch_up_frames < 1 or self.max_replay_frames < 1:
            raise ValueError("max_queue_frames, catch_up_frames and max_replay_frames must be >= 1")
        if self.max_replay_frames >= self.max_queue_frames:
            raise ValueError("max_queue_frames must exceed max_replay_frames, or a join replay counts as behind")
        if self.max_queue_delay_us <= 0 or self.keyframe_request_interval_us < 0 or self.max_replay_bytes < 0:
            raise ValueError("max_queue_delay_us must be > 0, the request interval and replay bytes >= 0")


@dataclass(frozen=True, slots=True)
class CachedFrame(Generic[T]):
    item: T
    frame_id: int
    keyframe: bool
    nbytes: int
    arrived_us: int


@dataclass(frozen=True, slots=True)
class GopSnapshot(Generic[T]):
    """The cached keyframe and the frames after it (only the keyframe when `complete` is False)."""

    frames: tuple[CachedFrame[T], ...] = ()
    complete: bool = False
    nbytes: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What one event did to the viewer's queue."""

    queued: int  # frames appended to the queue
    dropped: int  # frames removed from the queue, or the offered frame when it was not queued
    request_keyframe: bool  # ask the encoder for an IDR now (already rate-limited for this viewer)
    reason: Reason
    drop_reason: DropReason | None = None  # the metrics label of `dropped`, when dropped > 0


class GopCache(Generic[T]):
    """The last keyframe of a tier and the frames after it, bounded in count and bytes (one per tier reader).

    When the GOP outgrows the bounds the followers are dropped and only the keyframe is kept
    (`complete` False): a joining viewer then gets that keyframe as a still picture and asks for an IDR.
    """

    def __init__(self, max_frames: int = 120, max_bytes: int = 4 * 1024 * 1024) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("max_frames and max_bytes must be >= 1")
        self.max_frames, self.max_bytes = max_frames, max_bytes
        self._frames: list[CachedFrame[T]] = []
        self._complete = False
        self._nbytes = 0
        self.truncations = 0

    def add(self, item: T, frame_id: int, keyframe: bool, nbytes: int, now: int) -> None:
        frame = CachedFrame(item, frame_id, keyframe, nbytes, now)
        if keyframe:
            self._frames, self._nbytes, self._complete = [frame], nbytes, True
            return
        if not self._frames or not self._complete:
            return  # no keyframe yet, or truncated: followers are useless until the next keyframe
        if frame_id <= self._frames[-1].frame_id:
            return  # duplicate delivery
        if len(self._frames) + 1 > self.max_frames or self._nbytes + nbytes > self.max_bytes:
            self.break_chain()
            return
        self._frames.append(frame)
        self._nbytes += nbytes

    def break_chain(self) -> None:
        """Frames were missed (bus gap, reader restart): keep only the keyframe."""
        if self._frames:
            if self._complete:
                self.truncations += 1
            self._frames = self._frames[:1]
            self._nbytes = self._frames[0].nbytes
            self._complete = False

    def clear(self) -> None:
        self._frames, self._nbytes, self._complete = [], 0, False

    def snapshot(self) -> GopSnapshot[T]:
        return GopSnapshot(tuple(self._frames), self._complete, self._nbytes)

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        return self._nbytes


@dataclass(slots=True)
class _Queued(Generic[T]):
    item: T
    frame_id: int
    keyframe: bool
    nbytes: int
    queued_us: int


@dataclass(slots=True)
class GopCounters:
    sent: int = 0
    keyframe_requests: int = 0
    dropped: dict[DropReason, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


class GopViewerQueue(Generic[T]):
    """One viewer's in-order queue for one inter-frame tier (see the module docstring)."""

    def __init__(self, config: GopConfig | None = None) -> None:
        self.cfg = config or GopConfig()
        self._queue: deque[_Queued[T]] = deque()
        self._synced = False  # the queue (and what was sent before it) is an unbroken chain from a keyframe
        self._started = False  # a keyframe has been queued since the last join
        self._last_id: int | None = None  # newest frame id appended to the chain
        self._last_request_us: int | None = None
        self.counters = GopCounters()

    # --- queries ---------------------------------------------------------
    @property
    def waiting_for_keyframe(self) -> bool:
        return not self._synced

    @property
    def started(self) -> bool:
        """A keyframe has been queued: the viewer has something it can decode (switch tiers now)."""
        return self._started

    @property
    def queued_frames(self) -> int:
        return len(self._queue)

    # --- helpers ---------------------------------------------------------
    def _request(self, now: int) -> bool:
        last = self._last_request_us
        if last is not None and now - last < self.cfg.keyframe_request_interval_us:
            return False
        self._last_request_us = now
        self.counters.keyframe_requests += 1
        return True

    def _flush(self, reason: DropReason) -> int:
        n = len(self._queue)
        self._queue.clear()
        self.counters.dropped[reason] += n
        return n

    def _append(self, item: T, frame_id: int, keyframe: bool, nbytes: int, now: int) -> None:
        self._queue.append(_Queued(item, frame_id, keyframe, nbytes, now))
        self._last_id = frame_id
        if keyframe:
            self._started = True

    def _behind(self, now: int) -> bool:
        return len(self._queue) >= self.cfg.max_queue_frames or \
            (bool(self._queue) and now - self._queue[0].queued_us > self.cfg.max_queue_delay_us)

    # --- events ----------------------------------------------------------
    def join(self, snapshot: GopSnapshot[T], now: int) -> Decision:
        """Start (or restart, after a tier switch) from the tier's cached GOP."""
        flushed = self._flush("chain_broken")  # a re-join: what was queued for the old position is void
        why: DropReason | None = "chain_broken" if flushed else None
        self._synced = self._started = False
        self._last_id = None
        plan = plan_join(snapshot, self.cfg)
        if plan == "join-wait":
            return Decision(0, flushed, self._request(now), plan, why)
        if plan == "join-replay":
            for f in snapshot.frames:
                self._append(f.item, f.frame_id, f.keyframe, f.nbytes, now)
            self._synced = True
            return Decision(len(snapshot.frames), flushed, False, plan, why)
        key = snapshot.frames[0]
        self._append(key.item, key.frame_id, True, key.nbytes, now)  # a still picture at once
        return Decision(1, flushed, self._request(now), plan, why)

    def offer(self, item: T, frame_id: int, keyframe: bool, nbytes: int, now: int) -> Decision:
        """A new frame of the tier arrived from the bus."""
        cfg = self.cfg
        last = self._last_id
        if last is not None and (frame_id == last or (frame_id < last and not keyframe)):
            return Decision(0, 0, False, "duplicate")  # the bus reader delivered an entry twice
        if keyframe:
            if not self._synced or len(self._queue) >= cfg.catch_up_frames or self._behind(now):
                reason: Reason = "keyframe" if not self._synced else "caught-up"
                why: DropReason = "catch_up" if self._synced else "gop_wait"
                dropped = self._flush(why)
                self._synced = True
                self._append(item, frame_id, True, nbytes, now)
                return Decision(1, dropped, False, reason, why if dropped else None)
            self._append(item, frame_id, True, nbytes, now)
            return Decision(1, 0, False, "in-order")
        if not self._synced:
            self.counters.dropped["gop_wait"] += 1
            return Decision(0, 1, self._request(now), "waiting-for-keyframe", "gop_wait")
        if self._behind(now):
            dropped = self._flush("behind") + 1
            self.counters.dropped["behind"] += 1
            self._synced = False
            return Decision(0, dropped, self._request(now), "fell-behind", "behind")
        self._append(item, frame_id, False, nbytes, now)
        return Decision(1, 0, False, "in-order")

    def pop(self) -> T | None:
        """The next frame to send, in order (None: nothing queued). Call when the link can take one."""
        if not self._queue:
            return None
        entry = self._queue.popleft()
        self.counters.sent += 1
        return entry.item

    def break_chain(self, now: int) -> Decision:
        """A frame of the chain was lost outside this queue (send failed, bus gap): resync at a keyframe."""
        dropped = self._flush("chain_broken")
        self._synced = False
        return Decision(0, dropped, self._request(now), "chain-broken", "chain_broken" if dropped else None)

    def poll(self, now: int) -> bool:
        """Periodic check (e.g. once a second): True when a keyframe should be requested again."""
        return self._request(now) if not self._synced else False


def plan_join(snapshot: GopSnapshot[T], config: GopConfig | None = None) -> Reason:
    """How a viewer would join from `snapshot` (for logs and tests): replay, keyframe only, or wait."""
    cfg = config or GopConfig()
    frames = snapshot.frames
    if not frames or not frames[0].keyframe:
        return "join-wait"
    if snapshot.complete and len(frames) <= cfg.max_replay_frames and snapshot.nbytes <= cfg.max_replay_bytes:
        return "join-replay"
    return "join-keyframe-only"
