from __future__ import annotations

import random

import pytest

from framecast import constants as C
from framecast.client import LatencyHistogram, ReconnectPolicy, StatsWindow
from framecast.client.probe import TierMeasurement, recommend
from framecast.client.stats import percentile


def test_window_fps_latency_bandwidth_on_a_fake_clock() -> None:
    stats = StatsWindow(started=100.0, window_s=2.0)
    # 30 fps for 4 s, 10 kB frames, latency 20 ms (every 10th frame 50 ms)
    for i in range(120):
        now = 100.0 + (i + 1) / 30
        latency_us = 50_000 if i % 10 == 9 else 20_000
        stats.record(now, frame_id=i + 1, capture_us=10**15, received_us=10**15 + latency_us, size=10_000)
    snap = stats.snapshot(104.0)
    assert snap.fps == pytest.approx(30, abs=0.6)
    assert snap.latency_p50_ms == pytest.approx(20.0)
    assert snap.latency_p95_ms == pytest.approx(50.0)
    assert snap.kbit_s == pytest.approx(30 * 10_000 * 8 / 1000, rel=0.03)
    assert snap.frames == 120 and snap.dropped == 0
    # nothing arrives for 3 s: the window empties and FPS falls to 0
    assert stats.snapshot(107.0).fps == 0.0


def test_window_counts_id_gaps_but_not_reconnects_or_restarts() -> None:
    stats = StatsWindow(started=0.0)
    for t, fid in enumerate([1, 2, 5, 6, 10]):
        stats.record(float(t), fid, 0, 1000, 1)
    assert stats.dropped == 2 + 3
    stats.connection_reset()
    stats.record(6.0, 100, 0, 1000, 1)  # ids skipped while disconnected are not drops
    stats.record(7.0, 3, 0, 1000, 1)  # the source restarted: out of order, not a drop
    assert stats.dropped == 5
    assert stats.out_of_order == 1
    stats.record(8.0, 50, 5_000_000, 5_001_000, 1)  # captured 5 s later: a resync (old first frame, stall)
    assert stats.dropped == 5 and stats.resyncs == 1


def test_summary_fps_excludes_connect_time_and_reports_first_frame() -> None:
    stats = StatsWindow(started=10.0)
    for i in range(11):
        stats.record(11.0 + i * 0.1, i, 0, 5000, 1000)
    s = stats.summary(12.0)
    assert s.fps == pytest.approx(10.0)
    assert s.first_frame_ms == pytest.approx(1000.0)
    assert s.latency_ms["p50"] == pytest.approx(5.0, rel=0.02)
    assert s.frames == 11 and s.bytes == 11_000


def test_histogram_percentiles_within_one_percent_and_constant_memory() -> None:
    rng = random.Random(1)
    values = [rng.uniform(1_000, 200_000) for _ in range(50_000)]
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    for p in (50, 95, 99):
        assert h.percentile(p) == pytest.approx(percentile(values, p), rel=0.011)
    assert len(h._buckets) < 700
    h.add(-5.0)
    assert h.negative == 1
    assert LatencyHistogram().percentile(50) == 0.0


def test_reconnect_policy_honours_close_codes() -> None:
    policy = ReconnectPolicy()
    rng = random.Random(7)
    restart = [policy.delay(C.CLOSE_SERVICE_RESTART, 0, rng) for _ in range(100)]
    assert all(policy.restart_min_s <= d <= policy.restart_max_s for d in restart)
    later = [policy.delay(C.CLOSE_TRY_AGAIN_LATER, 0, rng) for _ in range(100)]
    assert min(later) >= policy.try_later_base_s / 2 > max(restart)
    assert policy.delay(C.CLOSE_UNKNOWN_STREAM, 0, rng) >= policy.try_later_base_s / 2
    assert len({round(d, 6) for d in later}) > 50  # jittered, not a thundering herd
    assert policy.delay(C.CLOSE_TRY_AGAIN_LATER, 20, rng) <= policy.try_later_cap_s
    grows = [policy.delay(1006, a, random.Random(a)) for a in range(8)]
    assert grows[5] > grows[0] and max(grows) <= policy.cap_s
    assert not policy.should_reconnect(C.CLOSE_UNKNOWN_STREAM)
    assert not policy.should_reconnect(C.CLOSE_AUTH_FAILED)
    assert not policy.should_reconnect(C.CLOSE_NORMAL)
    assert policy.should_reconnect(C.CLOSE_SERVICE_RESTART)
    assert policy.should_reconnect(1006)


def _tier(name: str, fps: float, link_fps: float | None = None, frames: int = 30) -> TierMeasurement:
    return TierMeasurement(name, 1280, 720, 80, frames=frames, fps=fps, frame_bytes=1000.0, link_fps=link_fps)


def test_recommend_best_tier_that_carries_the_source_rate() -> None:
    assert recommend([_tier("high", 29.0), _tier("low", 30.0)], 30.0) == ("high", 29.0)
    # high falls short: the best tier that keeps up wins
    assert recommend([_tier("high", 12.0), _tier("mid", 28.0), _tier("low", 30.0)], 30.0) == ("mid", 28.0)
    # the burst says the link cannot carry high at the source rate even though a short run looked fine
    assert recommend([_tier("high", 30.0, link_fps=14.0), _tier("low", 30.0, link_fps=60.0)], 30.0) == ("low", 30.0)
    # nothing keeps up: the fastest
    assert recommend([_tier("high", 5.0), _tier("low", 9.0)], 30.0) == ("low", 9.0)
    # nothing measured
    assert recommend([_tier("high", 0.0, frames=0)], 30.0) == (None, 0.0)
