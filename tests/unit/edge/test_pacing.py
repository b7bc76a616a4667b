"""Pacing and tier policy on a fake clock (integer microseconds, no sleeps)."""

from __future__ import annotations

import itertools

import pytest

from framecast.edge.pacing import (
    US,
    FpsCap,
    InflightWindow,
    RateMeter,
    TierConfig,
    TierPolicy,
    TokenBucket,
)

MS = 1000


# --- window ------------------------------------------------------------------
def test_window_always_allows_one_frame() -> None:
    w = InflightWindow(100 * MS, initial_frames=1, max_frames=4)
    assert w.can_send()
    w.on_send(1, 50_000, 0, now=0)
    assert not w.can_send()
    assert w.on_ack(1, now=10 * MS) is not None
    assert w.can_send() and w.inflight_frames == 0


def test_window_grows_while_delay_stays_under_target() -> None:
    w = InflightWindow(100 * MS, initial_frames=1, max_frames=4)
    t, fid = 0, 0
    for _ in range(40):
        while w.can_send():
            fid += 1
            w.on_send(fid, 10_000, t, t)
        t += 5 * MS  # fast link: every ack comes back in 5 ms
        w.on_ack(fid, t)
    assert w.window == 4


def test_window_shrinks_when_queueing_exceeds_target_and_never_below_one() -> None:
    w = InflightWindow(50 * MS, initial_frames=4, max_frames=4)
    t, fid = 0, 0
    # first a quick sample sets the base delay at 10 ms
    fid += 1
    w.on_send(fid, 1000, t, t)
    t += 10 * MS
    w.on_ack(fid, t)
    # then every frame takes 300 ms: queueing 290 ms > 50 ms target
    for _ in range(30):
        sent = []
        while w.can_send():
            fid += 1
            w.on_send(fid, 60_000, t, t)
            sent.append(fid)
        t += 300 * MS
        for f in sent:
            w.on_ack(f, t)
    assert w.window == 1.0
    assert w.can_send()  # one frame may always be in flight


def test_one_decrease_per_round_trip() -> None:
    w = InflightWindow(50 * MS, initial_frames=4, max_frames=4)
    w.on_send(1, 100, 0, 0)
    w.on_ack(1, 5 * MS)  # base 5 ms
    for fid in range(2, 6):
        w.on_send(fid, 100, 0, 10 * MS)
    for fid in range(2, 6):  # all four late: the window shrinks once, not four times
        w.on_ack(fid, 500 * MS)
    assert w.window == pytest.approx(4 * 0.7)


def test_ack_releases_earlier_frames_and_ignores_unknown_ids() -> None:
    w = InflightWindow(100 * MS, initial_frames=4)
    for fid in (10, 11, 12):
        w.on_send(fid, 1000, fid * 100, 0)
    assert w.on_ack(99, 1 * MS) is None
    res = w.on_ack(11, 2 * MS)
    assert res is not None and res.acked_frames == 2 and res.acked_bytes == 2000 and res.capture_us == 1100
    assert [f[0] for f in w.inflight] == [12]  # (frame id, bytes, sent, capture, seq)
    assert w.on_ack(11, 3 * MS) is None  # duplicate


def test_frame_ids_restarting_after_a_source_restart() -> None:
    w = InflightWindow(100 * MS, initial_frames=4)
    w.on_send(5000, 1000, 0, 0)
    w.on_send(1, 1000, 0, 1 * MS)  # source restarted: ids start over
    res = w.on_ack(1, 2 * MS)
    assert res is not None and res.acked_frames == 2 and w.inflight_frames == 0


# --- rates -------------------------------------------------------------------
def test_rate_meter() -> None:
    m = RateMeter(window_us=1 * US)
    m.reset(0)
    for i in range(1, 31):
        m.add(i * US // 30, 1000)
    assert m.rate(US) == pytest.approx(30, rel=0.05)
    assert m.bytes_per_s(US) == pytest.approx(30_000, rel=0.05)
    assert m.rate(3 * US) == 0


# --- fps cap -----------------------------------------------------------------
def test_fps_cap_limits_rate_without_building_credit() -> None:
    cap = FpsCap(10)
    sent = 0
    t = 0
    while t < 2 * US:  # frames offered at 100 fps
        if cap.wait_us(t) == 0:
            cap.on_send(t)
            sent += 1
        t += 10 * MS
    assert 19 <= sent <= 22
    # after a long pause, no burst
    t += 5 * US
    burst = 0
    for _ in range(10):
        if cap.wait_us(t) == 0:
            cap.on_send(t)
            burst += 1
        t += 1 * MS
    assert burst == 1
    cap.set(0)
    assert cap.wait_us(t) == 0


# --- tier policy ---------------------------------------------------------------
SIZES: list[float | None] = [64_000.0, 20_000.0, 5_000.0]
CFG = TierConfig(down_hold_us=1 * US, up_hold_us=2 * US, probe_interval_us=3 * US, probe_duration_us=2 * US,
                 probe_interval_max_us=20 * US)


def drive(p: TierPolicy, start: int, seconds: float, fps_at: dict[int, float], rate: float,
          span_us: int = 5 * US, sizes: list[float | None] = SIZES) -> list[tuple[int, int, str]]:
    """Feed the policy every 100 ms; delivered fps depends on the tier (a link of `rate` bytes/s)."""
    out = []
    t = start
    since = start
    while t < start + int(seconds * US):
        size = sizes[p.tier]
        assert size is not None
        fps = fps_at.get(p.tier, min(30.0, rate / size))
        d = p.update(t, delivered_fps=fps, target_fps=30.0, acked_bytes_per_s=fps * size,
                     need_bytes_per_frame=sizes, measure_span_us=min(span_us, t - since))
        if d is not None:
            out.append((t, d.tier, d.reason))
            since = t
        t += 100 * MS
    return out


def test_stays_on_best_tier_when_link_is_fast() -> None:
    p = TierPolicy(3, 0, 0, CFG)
    assert drive(p, 0, 20, {}, rate=10e6) == []


def test_moves_down_to_the_tier_that_fits() -> None:
    p = TierPolicy(3, 0, 0, CFG)
    events = drive(p, 0, 3, {}, rate=450_000)  # high gets 7 fps, medium 22, low 30
    assert events and events[0][1] == 2 and events[0][2] == "rate"
    # a severe shortfall (7 of 30 fps) waits a third of the hold, not for the first bad sample
    assert CFG.down_hold_us // 3 <= events[0][0] <= CFG.down_hold_us


def test_moderate_shortfall_waits_the_full_hold() -> None:
    p = TierPolicy(3, 0, 0, CFG)
    t = 0
    while True:
        d = p.update(t, delivered_fps=21, target_fps=30, acked_bytes_per_s=21 * 64000,
                     need_bytes_per_frame=SIZES, measure_span_us=5 * US)
        if d is not None:
            break
        t += 100 * MS
    assert t >= CFG.down_hold_us and d.tier == 1


def test_hysteresis_brief_dip_does_not_switch() -> None:
    p = TierPolicy(3, 0, 0, CFG)
    t = 0
    for i in range(50):
        fps = 10.0 if i % 8 == 0 else 30.0  # one bad sample in eight
        assert p.update(t, delivered_fps=fps, target_fps=30, acked_bytes_per_s=fps * 64000,
                        need_bytes_per_frame=SIZES, measure_span_us=5 * US) is None
        t += 100 * MS


def test_probe_up_fails_back_and_backs_off() -> None:
    p = TierPolicy(3, 2, 0, CFG)
    events = drive(p, 0, 40, {}, rate=450_000)  # medium (22 fps) is never good enough
    ups = [e for e in events if e[2] == "probe"]
    fails = [e for e in events if e[2] == "rate"]
    assert ups and len(fails) in (len(ups), len(ups) - 1)
    assert all(e[1] == 2 for e in fails)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(ups)]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]  # probes get rarer
    assert p.failed_probes >= 2


def test_probe_up_succeeds_and_climbs_when_link_recovers() -> None:
    p = TierPolicy(3, 2, 0, CFG)
    events = drive(p, 0, 20, {}, rate=10e6)
    assert [e[1] for e in events] == [1, 0]
    assert p.tier == 0 and p.probe_interval_us == CFG.probe_interval_us


def test_pin_and_unpin() -> None:
    p = TierPolicy(3, 0, 0, CFG)
    d = p.pin(2, 0)
    assert d is not None and d.tier == 2 and d.reason == "pinned"
    assert drive(p, 0, 10, {}, rate=10e6) == []  # pinned: no probing
    assert p.pin(None, 10 * US) is None
    assert drive(p, 10 * US, 10, {}, rate=10e6)  # automatic again: climbs


def test_no_decisions_while_source_is_stalled() -> None:
    p = TierPolicy(3, 0, 0, CFG)
    for t in range(0, 10 * US, 100 * MS):
        assert p.update(t, delivered_fps=0, target_fps=0, acked_bytes_per_s=0, need_bytes_per_frame=SIZES,
                        measure_span_us=5 * US) is None


def test_unknown_sizes_step_down_one_tier() -> None:
    p = TierPolicy(3, 0, 0, CFG)
    t = 0
    d = None
    while d is None:
        d = p.update(t, delivered_fps=5, target_fps=30, acked_bytes_per_s=300_000,
                     need_bytes_per_frame=[60_000, None, None], measure_span_us=5 * US)
        t += 100 * MS
    assert d.tier == 1


def test_token_bucket() -> None:
    b = TokenBucket(rate=10, burst=5, now=0)
    assert sum(b.take(0) for _ in range(20)) == 5
    assert b.take(100 * MS) and not b.take(100 * MS)


def test_window_rejects_bad_config() -> None:
    with pytest.raises(ValueError):
        InflightWindow(0)
    with pytest.raises(ValueError):
        TierPolicy(0, 0, 0)


def test_video_tier_that_fell_behind_goes_down_at_once_and_counts_as_a_failed_probe() -> None:
    p = TierPolicy(3, 1, 0, CFG)
    p.probe_from, p.probe_started_us = 2, 0  # probing up from tier 2
    d = p.fell_behind(100 * MS)
    assert d is not None and d.tier == 2 and d.reason == "rate"
    assert p.failed_probes == 1 and p.probe_interval_us == 2 * CFG.probe_interval_us
    assert p.fell_behind(200 * MS) is None  # already on the lightest tier
    p.pin(0, 300 * MS)
    assert p.fell_behind(400 * MS) is None  # a pinned tier stays


# --- a mixed ladder: automatic choice moves along rungs --------------------------
# video-high, video-low, JPEG high, JPEG mid, JPEG low (bytes per frame as measured at 720p/360p)
MIXED: list[float | None] = [10_400.0, 2_900.0, 116_000.0, 68_000.0, 19_600.0]
MIXED_RUNGS = (0, 1, 4)


def drive_mixed(p: TierPolicy, start: int, seconds: float, rate: float) -> list[tuple[int, int, str]]:
    """`drive` on the mixed ladder: a link of `rate` bytes/s, every frame of a tier the same size."""
    return drive(p, start, seconds, {}, rate, sizes=MIXED)


def test_mixed_ladder_never_steps_onto_a_heavier_jpeg_tier() -> None:
    p = TierPolicy(5, 0, 0, CFG, rungs=MIXED_RUNGS)
    events = drive_mixed(p, 0, 60, rate=150_000)  # 1.2 Mbit/s: video-high gets 14 fps, video-low 30
    assert events[0][1] == 1 and events[0][2] == "rate"
    assert {e[1] for e in events} <= {0, 1}  # probes up to video-high fail back; JPEG high/mid never tried
    assert p.failed_probes >= 2


def test_mixed_ladder_falls_back_to_the_lightest_jpeg_tier_and_climbs_back_to_video() -> None:
    p = TierPolicy(5, 0, 0, CFG, rungs=MIXED_RUNGS)
    slow = drive_mixed(p, 0, 4, rate=40_000)  # 320 kbit/s: even video-low gets 14 fps
    assert [e[1] for e in slow][-1] == 4 and p.tier == 4
    fast = drive_mixed(p, 4 * US, 30, rate=10e6)
    assert [e[1] for e in fast] == [1, 0]  # JPEG low -> video-low -> video-high, never JPEG high or mid


def test_fell_behind_moves_to_the_next_rung() -> None:
    p = TierPolicy(5, 1, 0, CFG, rungs=MIXED_RUNGS)
    d = p.fell_behind(0)
    assert d is not None and d.tier == 4
    assert p.fell_behind(1) is None


def test_a_pin_off_the_rungs_then_auto_moves_along_the_rungs() -> None:
    p = TierPolicy(5, 0, 0, CFG, rungs=MIXED_RUNGS)
    d = p.pin(2, 0)  # the viewer asked for JPEG high
    assert d is not None and d.tier == 2
    p.pin(None, 1 * US)
    events = drive_mixed(p, 1 * US, 3, rate=450_000)  # JPEG high gets 4 fps: the next rung down that fits
    assert events and events[0][1] == 4
    p2 = TierPolicy(5, 0, 0, CFG, rungs=MIXED_RUNGS)
    p2.pin(3, 0)
    p2.pin(None, 1 * US)
    assert drive_mixed(p2, 1 * US, 10, rate=10e6)[0][1] == 1  # healthy: probes up to the rung above, video-low


def test_rungs_must_index_the_ladder() -> None:
    with pytest.raises(ValueError):
        TierPolicy(3, 0, 0, rungs=(0, 3))
    with pytest.raises(ValueError):
        TierPolicy(3, 0, 0, rungs=())


def test_mixed_ladder_probes_up_from_a_heavier_last_rung_when_the_rung_above_fits() -> None:
    # JPEG low (19.6 KB) gets 7.7 fps at 150 kB/s, video-low (2.9 KB x 30 = 87 kB/s) would fit: probe up to it
    p = TierPolicy(5, 4, 0, CFG, rungs=MIXED_RUNGS)
    events = drive_mixed(p, 0, 10, rate=150_000)
    assert events and events[0][1] == 1 and events[0][2] == "probe"
    assert events[0][0] >= CFG.up_hold_us  # not before the hold time at the current tier
    assert p.tier == 1 and p.probe_from is None  # the probe held: it stays on video-low


def test_mixed_ladder_stays_on_the_last_rung_when_nothing_above_fits() -> None:
    p = TierPolicy(5, 4, 0, CFG, rungs=MIXED_RUNGS)
    assert drive_mixed(p, 0, 20, rate=40_000) == []  # 320 kbit/s: video-low needs 87 kB/s; JPEG low it is
