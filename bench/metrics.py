"""Pure summaries of measured frames: FPS, latency percentiles, drops, floors.

Every function takes plain numbers (times in seconds since the epoch) and
returns plain numbers; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.clients import NO_CAPTURE, FrameRecord
from bench.scene import FPS

MS = 1e3
BITS_PER_BYTE = 8
MBIT = 1e6
ROLLING_WINDOW_S = 1.0
RECOVERY_FLOOR_FACTOR = 1.5
RECOVERY_HOLD_S = 3.0


@dataclass(frozen=True)
class FrameStats:
    """Summary of the frames received in one measurement window."""

    frames: int
    window_s: float
    fps: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    bytes_per_frame: float | None
    goodput_mbit: float
    drops: int


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile ``q`` in [0, 100]; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def id_gaps(frame_ids: Sequence[int]) -> int:
    """Frames missing between consecutive received ids (never negative)."""
    return sum(max(0, b - a - 1) for a, b in itertools.pairwise(frame_ids))


def with_captures(frames: Sequence[FrameRecord], captures: dict[int, float]) -> list[FrameRecord]:
    """Fill capture times from the server's per-id log where the wire had none."""
    out = []
    for f in frames:
        capture = f.capture_s if f.capture_s != NO_CAPTURE else captures.get(f.frame_id, NO_CAPTURE)
        out.append(FrameRecord(f.frame_id, f.recv_s, capture, f.wire_bytes, f.quality))
    return out


def latency_ms(frame: FrameRecord) -> float | None:
    if frame.capture_s == NO_CAPTURE:
        return None
    return (frame.recv_s - frame.capture_s) * MS


def summarize(frames: Sequence[FrameRecord], start_s: float, end_s: float) -> FrameStats:
    """Stats for frames received in [start_s, end_s)."""
    window = [f for f in frames if start_s <= f.recv_s < end_s]
    duration = max(end_s - start_s, 1e-9)
    latencies = [lat for f in window if (lat := latency_ms(f)) is not None]
    total_bytes = sum(f.wire_bytes for f in window)
    return FrameStats(
        frames=len(window),
        window_s=duration,
        fps=len(window) / duration,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        latency_p99_ms=percentile(latencies, 99),
        latency_max_ms=max(latencies) if latencies else None,
        bytes_per_frame=total_bytes / len(window) if window else None,
        goodput_mbit=total_bytes * BITS_PER_BYTE / duration / MBIT,
        drops=id_gaps([f.frame_id for f in window]),
    )


def id_rate_fps(frames: Sequence[FrameRecord], start_s: float, end_s: float) -> float | None:
    """Source rate estimated from the frame ids received in the window (ids count produced frames)."""
    window = [f for f in frames if start_s <= f.recv_s < end_s]
    if len(window) < 2 or window[-1].recv_s <= window[0].recv_s:
        return None
    return (window[-1].frame_id - window[0].frame_id) / (window[-1].recv_s - window[0].recv_s)


def link_capacity_fps(rate_mbit: float, bytes_per_frame: float | None, source_fps: float = FPS) -> float | None:
    """Frames/s the link carries at this frame size, capped by the source rate."""
    if not bytes_per_frame:
        return None
    return min(source_fps, rate_mbit * MBIT / BITS_PER_BYTE / bytes_per_frame)


def latency_floor_ms(
    rate_mbit: float, rtt_ms: float, bytes_per_frame: float | None, source_fps: float = FPS
) -> float | None:
    """Serialization of one frame + one-way delay + one frame interval."""
    if not bytes_per_frame:
        return None
    serialization = bytes_per_frame * BITS_PER_BYTE / (rate_mbit * MBIT) * MS
    return serialization + rtt_ms / 2.0 + MS / source_fps


def rolling_median_ms(frames: Sequence[FrameRecord], at_s: float, window_s: float = ROLLING_WINDOW_S) -> float | None:
    """Median latency of frames received in (at_s - window_s, at_s]."""
    values = [lat for f in frames if at_s - window_s < f.recv_s <= at_s and (lat := latency_ms(f)) is not None]
    return percentile(values, 50)


def recovery_time_s(
    frames: Sequence[FrameRecord],
    step_s: float,
    end_s: float,
    threshold_ms: float,
    hold_s: float = RECOVERY_HOLD_S,
) -> float | None:
    """Seconds after ``step_s`` until the 1-s rolling median latency is under
    ``threshold_ms`` and stays under it for ``hold_s``; None if that never happens."""
    after = [f for f in frames if step_s <= f.recv_s < end_s]
    candidate: float | None = None
    for f in after:
        median = rolling_median_ms(after, f.recv_s)
        if median is None:
            continue
        if median > threshold_ms:
            candidate = None
            continue
        if candidate is None:
            candidate = f.recv_s
        if f.recv_s - candidate >= hold_s:
            return candidate - step_s
    return None


def latency_series(frames: Sequence[FrameRecord], origin_s: float) -> list[tuple[float, float]]:
    """(seconds since origin, latency ms) per frame, for plots."""
    return [(round(f.recv_s - origin_s, 4), round(lat, 2)) for f in frames if (lat := latency_ms(f)) is not None]
