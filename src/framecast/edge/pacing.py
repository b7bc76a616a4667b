"""Pure pacing and quality policy for one viewer: what to send, when, and at which tier.

Nothing here does I/O or reads a clock: every method takes `now` in integer
microseconds, so unit tests drive the policies with a fake clock.

* `InflightWindow` keeps at most a window of unacknowledged frames in flight.
  It is a delay-based controller: each ack gives a frame delay sample (send ->
  ack); while the standing delay (the smallest of the last three samples)
  stays under `base delay + latency target` the window grows by one frame per
  window of acks, and when queueing exceeds the target it shrinks
  multiplicatively (at most once per round trip). The base delay is the
  smallest sample of the last 5-10 s (two half-window minima). By Little's law
  the window settles at `delivery rate x (base delay + latency target)`, always
  at least one frame, so the newest frame waits for the link, never in a queue.
  One ack costs a few integer updates: no allocation but its result.
* The second, local gate is the socket's: the kernel's unsent bytes plus the
  transport buffer must be under a small budget (`ViewerState.budget()`) before
  the next frame is written (`wsconn.Outlet.write_frame`). Viewers that never
  ack are paced by this gate alone.
* `TierPolicy` picks the tier from delivered FPS and acked bytes/s, with
  hysteresis (hold times, margins) and periodic probing up with exponential
  back-off after failed probes. Automatic choice moves along the viewer's
  rungs, a subset of its tiers (a mixed ladder skips JPEG tiers that are
  heavier than a video tier of the same picture); a pin may name any tier.
* `FpsCap` limits a viewer's frame rate when it asks for fewer frames.
* `TokenBucket` bounds the control messages a viewer may send.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, NamedTuple

US: Final = 1_000_000
_NO_SAMPLE: Final = 1 << 62  # a delay larger than any sample


# One frame sent and not acked yet: a plain tuple (one is made per frame on the hot path; a literal is the
# cheapest object to build, interpreted or compiled), its fields at these indexes
InFlight = tuple[int, int, int, int, int]
_F_ID: Final = 0
_F_NBYTES: Final = 1
_F_SENT_US: Final = 2
_F_CAPTURE_US: Final = 3
_F_SEQ: Final = 4  # the window's send count when it went (one decrease per round trip)


class AckResult(NamedTuple):
    """What one ack told us: the frame's delay and its capture time."""

    frame_id: int
    delay_us: int  # send -> ack on the edge's clock
    capture_us: int
    acked_frames: int  # frames this ack released (earlier unacked frames count as delivered too)
    acked_bytes: int


# tuple.__new__ builds the named tuple in one C call: the class's own __new__ costs twice as much, and one is
# built per ack
_new_tuple: Final = tuple.__new__


class RateMeter:
    """Events and bytes over a sliding time window (for delivered FPS and bytes/s).

    Counts go into `buckets` fixed slices of the window; the newest slice's counts are two integer fields (an
    add is a compare and two additions, and allocates nothing compiled: one is made per frame per viewer),
    moved into the list of slices when time moves to the next slice. A query sums the slices, taking the
    oldest one in the share of it still inside the window.
    """

    __slots__ = ("_at", "_bytes_now", "_cur", "_events_now", "_first_us", "_n", "_slices", "_step", "window_us")

    def __init__(self, window_us: int = 2 * US, buckets: int = 20) -> None:
        self.window_us = window_us
        self._step = max(1, window_us // buckets)
        self._n = buckets + 1  # the slices the window spans, plus the partial oldest one
        self._slices = [0] * (2 * self._n)  # slice i: events at 2i, bytes at 2i + 1 (the newest: the fields)
        self._cur = -1  # the absolute index of the newest slice (-1: none yet)
        self._at = 0  # where the newest slice's events go in `_slices`
        self._events_now = self._bytes_now = 0  # the newest slice's counts
        self._first_us: int | None = None

    def add(self, now: int, nbytes: int, count: int = 1) -> None:
        if now // self._step != self._cur:
            if self._first_us is None:
                self._first_us = now
            self._advance(now // self._step)
        self._events_now += count
        self._bytes_now += nbytes

    def _advance(self, idx: int) -> None:
        """Make slice `idx` the newest, emptying the slices skipped since the last one (never goes back)."""
        cur = self._cur
        if idx <= cur:
            return
        n = self._n
        slices = self._slices
        if cur < 0 or idx - cur >= n:
            slices[:] = [0] * (2 * n)
        else:
            slices[self._at] = self._events_now
            slices[self._at + 1] = self._bytes_now
            for j in range(cur + 1, idx + 1):
                i = 2 * (j % n)
                slices[i] = slices[i + 1] = 0
        self._events_now = self._bytes_now = 0
        self._cur = idx
        self._at = 2 * (idx % n)

    def _in_window(self, now: int, field: int) -> float:
        """The events (`field` 0) or bytes (1) inside the window ending at `now`."""
        idx = now // self._step
        self._advance(idx)
        if self._cur < 0:
            return 0.0
        idx = max(idx, self._cur)
        self._slices[self._at] = self._events_now  # the newest slice's counts so far (it keeps counting)
        self._slices[self._at + 1] = self._bytes_now
        values = self._slices[field::2]
        oldest = (idx + 1) % self._n  # the slice that starts before the window does
        outside = (now - self.window_us) - (idx - self._n + 1) * self._step  # its part before the window
        return sum(values) - values[oldest] * min(max(outside, 0), self._step) / self._step

    def span_us(self, now: int) -> int:
        """The time the window actually covers (shorter right after the start)."""
        if self._first_us is None:
            return 0
        return max(1, min(self.window_us, now - self._first_us))

    def rate(self, now: int) -> float:
        """Events per second."""
        span = self.span_us(now)
        return self._in_window(now, 0) * US / span if span else 0.0

    def bytes_per_s(self, now: int) -> float:
        span = self.span_us(now)
        return self._in_window(now, 1) * US / span if span else 0.0

    def reset(self, now: int) -> None:
        self._slices[:] = [0] * (2 * self._n)
        self._events_now = self._bytes_now = 0
        self._cur = -1
        self._first_us = now


class InflightWindow:
    """Delay-based window of unacknowledged frames (see the module docstring)."""

    __slots__ = (
        "_d0",
        "_d1",
        "_decrease_seq",
        "_half_ends_us",
        "_half_us",
        "_min_before",
        "_min_now",
        "_sent_seq",
        "decrease",
        "inflight",
        "latency_target_us",
        "max_frames",
        "min_frames",
        "window",
    )

    def __init__(self, latency_target_us: int, *, min_frames: int = 1, max_frames: int = 4,
                 initial_frames: float = 1.0, base_window_us: int = 10 * US, decrease: float = 0.7) -> None:
        if latency_target_us <= 0 or min_frames < 1 or max_frames < min_frames:
            raise ValueError("need latency_target_us > 0 and 1 <= min_frames <= max_frames")
        self.latency_target_us = latency_target_us
        self.min_frames, self.max_frames = min_frames, max_frames
        self.window = min(max(initial_frames, min_frames), max_frames)
        self.decrease = decrease
        self.inflight: deque[InFlight] = deque()
        # the base delay: the smallest sample of the current half of the base window and of the one before
        # (so it forgets a minimum after between one half and one whole base window)
        self._half_us = max(1, base_window_us // 2)
        self._half_ends_us = 0
        self._min_now = self._min_before = _NO_SAMPLE
        self._sent_seq = 0
        self._decrease_seq = -1
        # the two delay samples before this one (two fields, not a deque: one object less to touch per ack)
        self._d0 = self._d1 = _NO_SAMPLE

    # --- queries ---------------------------------------------------------
    @property
    def inflight_frames(self) -> int:
        return len(self.inflight)

    def can_send(self) -> bool:
        """May one more frame go out now? Always when nothing is in flight (a fractional window rounds up)."""
        return len(self.inflight) < max(self.min_frames, self.window)

    def oldest_unacked_us(self) -> int | None:
        return self.inflight[0][_F_SENT_US] if self.inflight else None

    # --- events ----------------------------------------------------------
    def on_send(self, frame_id: int, nbytes: int, capture_us: int, now: int) -> None:
        self._sent_seq += 1
        self.inflight.append((frame_id, nbytes, now, capture_us, self._sent_seq))

    def on_ack(self, frame_id: int, now: int) -> AckResult | None:
        """Release `frame_id` and every frame sent before it (TCP delivers in order).

        Unknown ids (duplicates, or frames of a previous connection) are ignored.
        """
        inflight = self.inflight
        if not inflight:
            return None
        if inflight[0][_F_ID] != frame_id:  # the usual ack is of the oldest frame; else look (a short deque)
            for f in inflight:
                if f[_F_ID] == frame_id:
                    break
            else:
                return None
        released = released_bytes = 0
        while True:
            f = inflight.popleft()
            released += 1
            released_bytes += f[_F_NBYTES]
            if f[_F_ID] == frame_id:
                break
        delay = now - f[_F_SENT_US]
        if delay < 0:
            delay = 0
        if now >= self._half_ends_us:  # a new half window: the minimum of the one before the last expires
            self._min_before = self._min_now if now < self._half_ends_us + self._half_us else _NO_SAMPLE
            self._min_now = delay
            self._half_ends_us = now + self._half_us
        elif delay < self._min_now:
            self._min_now = delay
        base = self._min_now if self._min_now < self._min_before else self._min_before
        # the standing delay (smallest of the last few samples) ignores one late ack from a busy viewer;
        # a queue that really stands raises every sample
        d1 = self._d0
        d2 = self._d1
        self._d0, self._d1 = delay, d1
        standing = delay if delay < d1 else d1
        if d2 < standing:
            standing = d2
        if standing - base > self.latency_target_us:
            if f[_F_SEQ] > self._decrease_seq:
                # one multiplicative decrease per round trip: later acks of frames sent before it are not news
                self.window = max(float(self.min_frames), self.window * self.decrease)
                self._decrease_seq = self._sent_seq
        else:
            window = self.window
            self.window = min(float(self.max_frames), window + released / (window if window > 1.0 else 1.0))
        return _new_tuple(AckResult, (frame_id, delay, f[_F_CAPTURE_US], released, released_bytes))


class FpsCap:
    """At most `max_fps` frames per second (0 = uncapped)."""

    __slots__ = ("_next_us", "interval_us", "max_fps")

    def __init__(self, max_fps: float = 0.0) -> None:
        self.max_fps = 0.0
        self.interval_us = 0
        self._next_us = 0
        self.set(max_fps)

    def set(self, max_fps: float) -> None:
        self.max_fps = max(0.0, max_fps)
        # 5 % slack so a cap equal to the source rate does not beat against it
        self.interval_us = int(US / self.max_fps * 0.95) if self.max_fps > 0 else 0
        self._next_us = 0

    def wait_us(self, now: int) -> int:
        """How long until the next frame may go (0 = now)."""
        return max(0, self._next_us - now) if self.interval_us else 0

    def on_send(self, now: int) -> None:
        if self.interval_us:
            # keep the cadence, but never accumulate credit after a pause
            self._next_us = max(self._next_us + self.interval_us, now + self.interval_us // 2) \
                if self._next_us and now - self._next_us < self.interval_us else now + self.interval_us


@dataclass(frozen=True, slots=True)
class TierConfig:
    down_fps_ratio: float = 0.8  # below this share of the target FPS the tier is too heavy
    up_fps_ratio: float = 0.95  # at or above this the viewer is healthy enough to probe up
    down_hold_us: int = 1_500_000  # sustained shortfall before switching down
    up_hold_us: int = 3 * US  # healthy time at a tier before the first probe up
    probe_interval_us: int = 4 * US  # first probe delay; doubles after each failed probe
    probe_interval_max_us: int = 60 * US
    probe_duration_us: int = 3 * US  # a probe that survives this long succeeded
    capacity_margin: float = 0.9  # switch down to a tier needing at most this share of the measured rate
    min_target_fps: float = 1.0  # below this (stalled source) no decisions are taken
    settle_us: int = 500_000  # FPS measured over less than this after a switch is not trusted yet
    severe_fps_ratio: float = 0.5  # below this share of the target the down hold is a third as long


@dataclass(frozen=True, slots=True)
class TierDecision:
    tier: int
    reason: str


class TierPolicy:
    """Per-viewer tier choice: 0 is the best tier, higher indices are lighter."""

    def __init__(self, n_tiers: int, start_tier: int, now: int, config: TierConfig | None = None,
                 rungs: tuple[int, ...] | None = None) -> None:
        if n_tiers < 1 or not 0 <= start_tier < n_tiers:
            raise ValueError("start_tier must index the ladder")
        self.rungs = tuple(range(n_tiers)) if rungs is None else tuple(sorted(set(rungs)))
        if not self.rungs or not all(0 <= r < n_tiers for r in self.rungs):
            raise ValueError("rungs must be tier indices of the ladder")
        self.cfg = config or TierConfig()
        self.tier = start_tier
        self.pinned: int | None = None
        self.since_us = now  # time of the last switch
        self.bad_since_us: int | None = None
        self.good_since_us: int | None = None
        self.probe_from: int | None = None  # tier we probed up from, while probing
        self.probe_started_us = 0
        self.probe_interval_us = self.cfg.probe_interval_us
        self.next_probe_us = now + self.cfg.up_hold_us
        self.failed_probes = 0

    def pin(self, tier: int | None, now: int) -> TierDecision | None:
        """Pin a tier (a viewer's `set{tier}`), or return to automatic choice with None."""
        self.pinned = tier
        self.probe_from = None
        self.bad_since_us = self.good_since_us = None
        if tier is not None and tier != self.tier:
            return self._switch(tier, now, "pinned")
        return None

    def update(self, now: int, *, delivered_fps: float, target_fps: float, acked_bytes_per_s: float,
               need_bytes_per_frame: list[float | None], measure_span_us: int) -> TierDecision | None:
        """Feed the latest measurements; returns a decision when the tier should change.

        `need_bytes_per_frame[i]` is the recent mean frame size of tier i (None if unknown).
        `measure_span_us` is how long the FPS measurement has been accumulating at this tier.
        """
        cfg = self.cfg
        if self.pinned is not None or target_fps < cfg.min_target_fps:
            self.bad_since_us = self.good_since_us = None
            return None
        settled = measure_span_us >= min(cfg.settle_us, cfg.down_hold_us)
        ratio = delivered_fps / target_fps if settled else 1.0
        # --- too heavy: delivered FPS fell below the target
        if ratio < cfg.down_fps_ratio:
            self.good_since_us = None
            if self.bad_since_us is None:
                self.bad_since_us = now
            lighter = self._lighter_above(now, acked_bytes_per_s, target_fps, need_bytes_per_frame)
            if lighter is not None:
                # a mixed ladder's last rung (JPEG) may be heavier than the rung above it (video): try that one
                self.probe_from = self.tier
                self.probe_started_us = now
                return self._switch(lighter, now, "probe")
            hold = cfg.down_hold_us // 2 if self.probe_from is not None else cfg.down_hold_us
            if ratio < cfg.severe_fps_ratio:
                hold //= 3  # less than half the frames: no need to wait long to be sure
            if now - self.bad_since_us >= hold and self._below(self.tier) is not None:
                if self.probe_from is not None:
                    # failed probe: back to where we came from, probe again later and less often
                    target = self.probe_from
                    self.failed_probes += 1
                    self.probe_interval_us = min(self.probe_interval_us * 2, cfg.probe_interval_max_us)
                    self.probe_from = None
                    self.next_probe_us = now + self.probe_interval_us
                    return self._switch(target, now, "rate")  # probes go up: `target` is a lighter rung
                target = self._fit(acked_bytes_per_s, target_fps, need_bytes_per_frame)
                self.next_probe_us = max(self.next_probe_us, now + self.probe_interval_us)
                return self._switch(target, now, "rate")
            return None
        self.bad_since_us = None
        if ratio >= cfg.up_fps_ratio:
            if self.good_since_us is None:
                self.good_since_us = now
        else:
            self.good_since_us = None
        # --- a probe that held long enough succeeded
        if self.probe_from is not None and now - self.probe_started_us >= cfg.probe_duration_us:
            # the probe held for probe_duration: that is proof enough to try the next tier up at once
            self.probe_from = None
            self.probe_interval_us = cfg.probe_interval_us
            self.next_probe_us = now
            if self.good_since_us is not None:  # the probe's healthy time counts toward the up hold
                self.good_since_us = min(self.good_since_us, now - cfg.up_hold_us)
        # --- healthy for long enough: probe one tier up
        above = self._above(self.tier)
        if (self.probe_from is None and above is not None and self.good_since_us is not None
                and now - self.good_since_us >= cfg.up_hold_us and now >= self.next_probe_us):
            self.probe_from = self.tier
            self.probe_started_us = now
            return self._switch(above, now, "probe")
        return None

    def fell_behind(self, now: int) -> TierDecision | None:
        """A video tier's queue overflowed (its link cannot carry it): one tier down at once."""
        lower = self._below(self.tier)
        if self.pinned is not None or lower is None:
            return None
        if self.probe_from is not None:  # a failed probe: back off like one
            self.failed_probes += 1
            self.probe_interval_us = min(self.probe_interval_us * 2, self.cfg.probe_interval_max_us)
            self.probe_from = None
        self.next_probe_us = max(self.next_probe_us, now + self.probe_interval_us)
        return self._switch(lower, now, "rate")

    def _lighter_above(self, now: int, bytes_per_s: float, fps: float, need: list[float | None]) -> int | None:
        """The rung above, when its frames are smaller than this tier's and fit the measured rate at `fps`
        (not while probing, nor before this tier's up hold and the probe timer have passed)."""
        above = self._above(self.tier)
        if above is None or self.probe_from is not None or now < self.next_probe_us \
                or now - self.since_us < self.cfg.up_hold_us:
            return None
        size, current = _size(need, above), _size(need, self.tier)
        if size is None or current is None or size >= current:
            return None
        return above if size * fps <= bytes_per_s * self.cfg.capacity_margin else None

    def _below(self, tier: int) -> int | None:
        """The next lighter rung under `tier` (None at the bottom)."""
        return next((r for r in self.rungs if r > tier), None)

    def _above(self, tier: int) -> int | None:
        """The next better rung over `tier` (None at the top)."""
        return next((r for r in reversed(self.rungs) if r < tier), None)

    def _fit(self, bytes_per_s: float, fps: float, need: list[float | None]) -> int:
        """The best rung below the current tier whose frames fit the measured rate at `fps`."""
        budget = bytes_per_s * self.cfg.capacity_margin
        lower = [r for r in self.rungs if r > self.tier]
        for i in lower:
            size = _size(need, i)
            if size is not None and size * fps <= budget:
                return i
        # nothing known fits: one step down at a time
        return lower[0] if all(_size(need, i) is None for i in lower) else lower[-1]

    def _switch(self, tier: int, now: int, reason: str) -> TierDecision:
        self.tier = tier
        self.since_us = now
        self.bad_since_us = None
        self.good_since_us = None
        return TierDecision(tier, reason)


def _size(need: list[float | None], tier: int) -> float | None:
    """Bytes per frame of `tier` (None: unknown, or not in the list)."""
    return need[tier] if tier < len(need) else None


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved; one token per control message."""

    __slots__ = ("_last", "_per_us", "burst", "tokens")

    def __init__(self, rate: float, burst: float, now: int) -> None:
        self.burst = burst
        self.tokens = burst
        self._per_us = rate / US
        self._last = now

    def take(self, now: int) -> bool:
        tokens = self.tokens + (now - self._last) * self._per_us
        self._last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False
