"""ViewerState, the per-viewer decisions of the edge, on a fake clock (integer microseconds, no sleeps)."""

from __future__ import annotations

from framecast.edge.pacing import US, TierConfig
from framecast.edge.viewer import JUDGE_WAIT_MAX_US, OPEN, WINDOW_FULL, ViewerConfig, ViewerState

MS = 1000
CFG = ViewerConfig(latency_target_us=50 * MS, max_inflight_frames=4, unsent_budget_bytes=16_384,
                   legacy_budget_bytes=65_536, timeout_us=10 * US,
                   tier=TierConfig(down_hold_us=1_500_000, up_hold_us=3 * US, probe_interval_us=4 * US))


def acking_state(now: int = 0, **kw: object) -> ViewerState:
    st = ViewerState(CFG, now, n_tiers=3, rungs=(0, 1, 2), **kw)  # type: ignore[arg-type]
    assert st.on_ack(now, 0) is None  # the first ack only says "this viewer acks"
    return st


def test_a_viewer_that_never_acks_is_gated_by_the_socket_alone_with_the_legacy_budget() -> None:
    st = ViewerState(CFG, 0, n_tiers=1, rungs=(0,))
    assert st.budget() == 65_536
    for i in range(20):
        assert st.gate(i * 33 * MS) == OPEN
        st.on_sent(i * 33 * MS, i + 1, 50_000, i * 33 * MS)
    assert not st.window.inflight  # nothing tracked without acks
    assert st.on_ack(700 * MS, 20) is None
    assert st.acking and st.budget() == 16_384


def test_the_window_closes_at_its_size_and_an_ack_reopens_it() -> None:
    st = acking_state()
    st.window.window = 2.0
    st.on_sent(1 * MS, 1, 10_000, 0)
    assert st.gate(2 * MS) == OPEN
    st.on_sent(2 * MS, 2, 10_000, 0)
    assert st.gate(3 * MS) == WINDOW_FULL
    result = st.on_ack(40 * MS, 1)
    assert result is not None and result.acked_frames == 1 and result.delay_us == 39 * MS
    assert st.gate(41 * MS) == OPEN


def test_an_ack_releases_every_earlier_frame_and_unknown_ids_are_ignored() -> None:
    st = acking_state()
    for i in range(1, 4):
        st.on_sent(i * MS, i, 1000, i * MS)
    assert st.on_ack(50 * MS, 99) is None
    result = st.on_ack(50 * MS, 3)
    assert result is not None and result.acked_frames == 3 and result.acked_bytes == 3000
    assert st.on_ack(51 * MS, 3) is None  # a duplicate


def test_the_fps_cap_delays_jpeg_frames_but_never_a_video_frame() -> None:
    st = ViewerState(CFG, 0, n_tiers=1, rungs=(0,))
    st.cap.set(10.0)
    st.on_sent(0, 1, 1000, 0)
    wait = st.gate(10 * MS)
    assert 0 < wait <= 95 * MS - 10 * MS
    assert st.gate(10 * MS, video=True) == OPEN
    assert st.gate(96 * MS) == OPEN


def test_frames_never_go_back_in_time() -> None:
    st = ViewerState(CFG, 0, n_tiers=1, rungs=(0,))
    st.on_sent(0, 5, 1000, 500)
    assert not st.is_fresh(500) and not st.is_fresh(400) and st.is_fresh(501)


def test_a_viewer_that_stops_acking_times_out_after_the_timeout_and_not_before() -> None:
    st = acking_state()
    st.on_sent(1 * MS, 1, 1000, 0)
    assert st.timed_out(1 * MS + CFG.timeout_us) is None
    timeout = st.timed_out(2 * MS + CFG.timeout_us)
    assert timeout is not None and timeout.what == "acks" and timeout.since_us == 1 * MS


def test_a_viewer_that_stops_reading_times_out_from_the_first_refused_write() -> None:
    st = ViewerState(CFG, 0, n_tiers=1, rungs=(0,))
    st.on_blocked(3 * US)
    st.on_blocked(4 * US)  # still blocked: the first refusal counts
    assert st.timed_out(13 * US) is None
    timeout = st.timed_out(13 * US + 1)
    assert timeout is not None and timeout.what == "reads"
    st.on_sent(13 * US + 2, 1, 1000, 0)  # a write went through: not stuck any more
    assert st.timed_out(30 * US) is None


def test_a_frame_stuck_in_the_transport_buffer_counts_as_stuck_for_acking_viewers_too() -> None:
    st = acking_state()
    st.writing_since_us = 5 * US
    assert st.timed_out(15 * US + 1) is not None
    st.writing_since_us = None
    assert st.timed_out(15 * US + 1) is None


def drive(st: ViewerState, start: int, end: int, *, fps: float, frame_bytes: int, sizes: list[float | None],
          rtt: int = 20 * MS) -> list[tuple[int, int, str]]:
    """Send at `fps` (every frame acked one `rtt` later) and let the state adapt; returns its decisions."""
    decisions = []
    period = int(US / fps)
    fid = 1000 + start // period
    acks: list[tuple[int, int]] = []
    t = start
    while t < end:
        while acks and acks[0][0] <= t:
            at, aid = acks.pop(0)
            st.on_ack(at, aid)
        if st.gate(t) == OPEN:
            fid += 1
            st.on_sent(t, fid, frame_bytes, t)
            acks.append((t + rtt, fid))
        if st.adapt_due(t):
            d = st.adapt(t, target_fps=30.0, frame_sizes=sizes)
            if d is not None:
                decisions.append((t, d.tier, d.reason))
                st.switched(t)
        t += period
    return decisions


def test_a_link_that_delivers_too_few_frames_moves_the_viewer_down_after_the_hold() -> None:
    st = acking_state()
    sizes: list[float | None] = [60_000.0, 20_000.0, 8_000.0]
    decisions = drive(st, 0, 4 * US, fps=12.0, frame_bytes=60_000, sizes=sizes)
    assert decisions, "12 of 30 fps for 4 s must switch down"
    t, tier, reason = decisions[0]
    assert reason == "rate" and tier in (1, 2)
    assert t >= 500 * MS  # severe shortfall: a third of the 1.5 s hold, after the measurement settles


def test_a_new_tier_is_judged_from_its_own_first_ack_not_the_old_tiers_frames_in_flight() -> None:
    st = acking_state()
    st.on_sent(1 * MS, 1, 60_000, 0)  # an old-tier frame in flight
    st.switched(2 * MS)
    assert st.adapt(3 * MS, target_fps=30.0, frame_sizes=[None] * 3) is None and st.judge_from_id == -1
    st.on_sent(4 * MS, 2, 20_000, 0)  # the new tier's first frame
    assert st.judge_from_id == 2
    st.on_ack(30 * MS, 1)  # the old tier's frame drains: still not judged
    assert st.judge_from_id == 2
    st.on_ack(60 * MS, 2)
    assert st.judge_from_id is None and st.delivered.span_us(60 * MS) >= 1


def test_judging_waits_at_most_the_judge_deadline() -> None:
    st = acking_state()
    st.switched(0)
    st.on_sent(1 * MS, 7, 1000, 0)  # never acked (the source restarted, ids changed)
    st.adapt(JUDGE_WAIT_MAX_US + 1, target_fps=30.0, frame_sizes=[None] * 3)
    assert st.judge_from_id is None


def test_nothing_is_decided_while_a_switch_is_pending_or_a_keyframe_awaited() -> None:
    st = acking_state()
    assert st.adapt(5 * US, target_fps=30.0, frame_sizes=[None] * 3, switch_pending=True) is None
    assert st.fell_behind(5 * US, switch_pending=True) is None
    assert st.adapt(6 * US, target_fps=30.0, frame_sizes=[None] * 3, waiting_for_keyframe=True) is None
    decision = st.fell_behind(7 * US)
    assert decision is not None and decision.tier == 1 and decision.reason == "rate"


def test_a_video_tier_gets_a_longer_window_that_shrinks_back_after() -> None:
    st = acking_state()
    st.set_video(True)
    assert st.window.max_frames == 16
    st.window.window = 12.0
    st.set_video(False)
    assert st.window.max_frames == 4 and st.window.window == 4.0
