"""The ack window against a modelled bottleneck link (fake clock): link-rate FPS at bounded latency."""

from __future__ import annotations

import pytest

from .linksim import simulate

# (rate bytes/s, RTT ms, frame bytes): the benchmark's links at the frame sizes its tiers produce
LINKS = [
    pytest.param(1e6, 50, 18_000, id="8mbit-50ms-18KB"),
    pytest.param(1e6, 50, 37_000, id="8mbit-50ms-37KB"),
    pytest.param(2.5e6, 20, 116_000, id="20mbit-20ms-116KB"),
    pytest.param(375e3, 100, 15_000, id="3mbit-100ms-15KB"),
    pytest.param(6.25e6, 200, 60_000, id="50mbit-200ms-60KB"),
]


@pytest.mark.parametrize("busy_viewer", [False, True], ids=["steady", "busy-viewer"])
@pytest.mark.parametrize("rate,rtt_ms,size", LINKS)
def test_link_rate_fps_at_bounded_latency(rate: float, rtt_ms: float, size: int, busy_viewer: bool) -> None:
    r = simulate(rate_bps=rate, rtt_ms=rtt_ms, frame_bytes=size, target_ms=50, max_frames=8,
                 jitter_ms=20.0 if busy_viewer else 0.0, spike_every=10 if busy_viewer else 0, spike_ms=150.0)
    link_fps = min(30.0, rate / size)
    floor_ms = size / rate * 1000 + rtt_ms / 2  # serialization + one way
    assert r.fps >= 0.95 * link_fps, (r.fps, link_fps)
    # queueing stays near the 50 ms target (+ one frame interval waiting for the window, + one frame queued)
    assert r.pct(0.95) <= floor_ms + 50 + 1000 / link_fps + size / rate * 1000 + 20, (r.pct(0.95), floor_ms)


def test_a_window_of_four_cannot_fill_a_long_path() -> None:
    """Why the default is 8: at 30 fps, 4 frames in flight cover only ~130 ms of path delay."""
    few = simulate(rate_bps=6.25e6, rtt_ms=200, frame_bytes=60_000, max_frames=4)
    enough = simulate(rate_bps=6.25e6, rtt_ms=200, frame_bytes=60_000, max_frames=8)
    assert few.fps < 20 and enough.fps >= 29.5
