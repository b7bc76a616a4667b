"""Viewer-side statistics: FPS, latency percentiles, bandwidth and drops.

Pure bookkeeping with the clock passed in (seconds for arrival times, wall-clock
microseconds for latency), so tests drive it with a fake clock. Memory is
constant: the sliding window is bounded and whole-run latencies go into a
log-bucket histogram (1 % resolution), never a list that grows with run time.

Latency is `received_us - capture_us`: the edge stamps capture time with the
inference host's wall clock, so the figure is only meaningful when viewer and
inference host clocks agree (same host, or both NTP-synced; the error is the
clock offset).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

_RATIO = 1.01
# A gap in frame ids counts as drops only between frames captured close together: a joining
# viewer's first frame may be an old cached one, and ids skipped across a stall are not losses.
RESYNC_GAP_US = 2_000_000
_LOG_RATIO = math.log(_RATIO)


class LatencyHistogram:
    """Log-bucketed histogram of non-negative values (µs); percentiles within ~1 %."""

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.negative = 0  # samples below zero (clock offset between hosts), clamped to 0
        self.max = 0.0
        self.total = 0.0

    def add(self, value: float) -> None:
        if value < 0:
            self.negative += 1
            value = 0.0
        index = 0 if value < 1 else 1 + int(math.log(value) / _LOG_RATIO)
        self._buckets[index] = self._buckets.get(index, 0) + 1
        self.count += 1
        self.total += value
        self.max = max(self.max, value)

    def percentile(self, p: float) -> float:
        """Value at percentile `p` (0-100), nearest rank; 0.0 when empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                if index == 0:
                    return 0.0
                return min(self.max, math.exp((index - 0.5) * _LOG_RATIO))
        return self.max  # pragma: no cover

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of an unsorted list; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """The numbers a live display shows, over the last `window_s` seconds."""

    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    kbit_s: float
    frames: int  # whole run
    bytes: int  # whole run
    dropped: int  # whole run: frames missing from the id sequence
    window_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StatsSummary:
    """Whole-run figures, for `--json` and benchmarks."""

    frames: int
    bytes: int
    duration_s: float
    fps: float  # frames over the time from first to last frame
    kbit_s: float
    latency_ms: dict[str, float]  # p50, p95, p99, max, mean
    dropped: int
    out_of_order: int
    resyncs: int  # id jumps across more than RESYNC_GAP_US of capture time (not counted as drops)
    first_frame_ms: float | None  # from start (connect) to the first frame
    clock_skew_samples: int  # frames whose capture time was after their arrival

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StatsWindow:
    """Sliding-window and whole-run statistics of received frames.

    `now` arguments are monotonic seconds; `received_us`/`capture_us` are wall-clock µs.
    """

    def __init__(self, started: float, window_s: float = 5.0, max_samples: int = 20_000) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.started = started
        self._recent: deque[tuple[float, float, int]] = deque(maxlen=max_samples)  # (now, latency µs, bytes)
        self.histogram = LatencyHistogram()
        self.frames = 0
        self.bytes = 0
        self.dropped = 0
        self.out_of_order = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.resyncs = 0
        self._last_id: int | None = None
        self._last_capture_us = 0

    def record(self, now: float, frame_id: int, capture_us: int, received_us: int, size: int) -> None:
        latency_us = float(received_us - capture_us)
        self._recent.append((now, latency_us, size))
        self.histogram.add(latency_us)
        self.frames += 1
        self.bytes += size
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        if self._last_id is not None:
            if frame_id > self._last_id + 1:
                if capture_us - self._last_capture_us < RESYNC_GAP_US:
                    self.dropped += frame_id - self._last_id - 1
                else:
                    self.resyncs += 1
            elif frame_id <= self._last_id:
                self.out_of_order += 1  # a restarted source counts here, not as a huge gap
        self._last_id = frame_id
        self._last_capture_us = capture_us

    def connection_reset(self) -> None:
        """After a reconnect, frames missed while away are not counted as drops."""
        self._last_id = None

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        while self._recent and self._recent[0][0] <= horizon:
            self._recent.popleft()

    def snapshot(self, now: float) -> StatsSnapshot:
        self._prune(now)
        span = max(min(self.window_s, now - self.started), 1e-6)
        latencies = [lat for _, lat, _ in self._recent]
        size = sum(b for _, _, b in self._recent)
        return StatsSnapshot(
            fps=len(self._recent) / span,
            latency_p50_ms=percentile(latencies, 50) / 1000.0,
            latency_p95_ms=percentile(latencies, 95) / 1000.0,
            latency_p99_ms=percentile(latencies, 99) / 1000.0,
            kbit_s=size * 8 / 1000.0 / span,
            frames=self.frames,
            bytes=self.bytes,
            dropped=self.dropped,
            window_s=self.window_s,
        )

    def summary(self, now: float) -> StatsSummary:
        h = self.histogram
        active = (self.last_at - self.first_at) if self.first_at is not None and self.last_at is not None else 0.0
        fps = (self.frames - 1) / active if self.frames > 1 and active > 0 else 0.0
        duration = max(now - self.started, 1e-6)
        return StatsSummary(
            frames=self.frames,
            bytes=self.bytes,
            duration_s=round(duration, 3),
            fps=round(fps, 2),
            kbit_s=round(self.bytes * 8 / 1000.0 / duration, 1),
            latency_ms={
                "p50": round(h.percentile(50) / 1000.0, 2),
                "p95": round(h.percentile(95) / 1000.0, 2),
                "p99": round(h.percentile(99) / 1000.0, 2),
                "max": round(h.max / 1000.0, 2),
                "mean": round(h.mean / 1000.0, 2),
            },
            dropped=self.dropped,
            out_of_order=self.out_of_order,
            resyncs=self.resyncs,
            first_frame_ms=None if self.first_at is None else round((self.first_at - self.started) * 1000.0, 1),
            clock_skew_samples=h.negative,
        )
