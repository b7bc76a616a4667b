"""GOP-aware sending on a fake clock: joins mid-GOP, falling behind, catch-up, request rate limits, the cache."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framecast.edge.gop import Decision, GopCache, GopConfig, GopSnapshot, GopViewerQueue, plan_join

MS = 1000
FRAME_US = 33 * MS


@dataclass(frozen=True)
class F:
    """A stand-in for the edge's shared BusFrame."""

    frame_id: int
    keyframe: bool
    nbytes: int = 10_000


class Tier:
    """A tier's frames as the bus delivers them: ids 1, 2, ... with an IDR every `gop` frames."""

    def __init__(self, gop: int = 30) -> None:
        self.gop = gop
        self.next_id = 1

    def next(self, force_key: bool = False) -> F:
        fid = self.next_id
        self.next_id += 1
        return F(fid, force_key or (fid - 1) % self.gop == 0)


def offer(q: GopViewerQueue[F], f: F, now: int) -> Decision:
    return q.offer(f, f.frame_id, f.keyframe, f.nbytes, now)


def drain(q: GopViewerQueue[F]) -> list[F]:
    out = []
    while (f := q.pop()) is not None:
        out.append(f)
    return out


def assert_decodable(sent: list[F]) -> None:
    """The decoder's view: starts at a keyframe, each P-frame follows the frame sent just before it."""
    assert sent, "nothing sent"
    assert sent[0].keyframe, "first frame sent is not a keyframe"
    for prev, cur in itertools.pairwise(sent):
        if not cur.keyframe:
            assert cur.frame_id == prev.frame_id + 1, f"P-frame {cur.frame_id} sent after {prev.frame_id}"


def cache_of(frames: list[F], **kw: int) -> GopCache[F]:
    cache: GopCache[F] = GopCache(**kw)
    for i, f in enumerate(frames):
        cache.add(f, f.frame_id, f.keyframe, f.nbytes, i * FRAME_US)
    return cache


# --- viewer queue ----------------------------------------------------------

def test_in_order_viewer_gets_every_frame_in_order() -> None:
    tier, q = Tier(gop=10), GopViewerQueue[F]()
    sent: list[F] = []
    now = 0
    for _ in range(35):
        d = offer(q, tier.next(), now)
        assert d.queued == 1 and not d.request_keyframe
        sent += drain(q)
        now += FRAME_US
    assert [f.frame_id for f in sent] == list(range(1, 36))
    assert q.counters.keyframe_requests == 0 and sum(q.counters.dropped.values()) == 0


def test_join_mid_gop_replays_cached_keyframe_and_followers() -> None:
    tier = Tier(gop=30)
    frames = [tier.next() for _ in range(12)]  # keyframe 1, P 2..12
    cache = cache_of(frames)
    q = GopViewerQueue[F]()
    d = q.join(cache.snapshot(), now=0)
    assert (d.reason, d.queued, d.request_keyframe) == ("join-replay", 12, False)
    offer(q, tier.next(), FRAME_US)
    sent = drain(q)
    assert [f.frame_id for f in sent] == list(range(1, 14))
    assert_decodable(sent)


def test_join_with_long_gop_sends_keyframe_only_and_asks_for_a_fresh_one() -> None:
    tier = Tier(gop=300)
    cache = cache_of([tier.next() for _ in range(100)])  # longer than max_replay_frames
    q = GopViewerQueue[F]()
    d = q.join(cache.snapshot(), now=0)
    assert (d.reason, d.queued, d.request_keyframe) == ("join-keyframe-only", 1, True)
    sent = drain(q)
    assert [f.frame_id for f in sent] == [1]  # a still picture at once
    # P-frames after it would reference frame 100, which the viewer never got
    for i in range(5):
        d = offer(q, tier.next(), (i + 1) * FRAME_US)
        assert d.reason == "waiting-for-keyframe" and not d.queued
        assert not d.request_keyframe  # rate-limited: asked at the join
    fresh = tier.next(force_key=True)
    assert offer(q, fresh, 7 * FRAME_US).reason == "keyframe"
    offer(q, tier.next(), 8 * FRAME_US)
    sent += drain(q)
    assert [f.frame_id for f in sent] == [1, fresh.frame_id, fresh.frame_id + 1]


def test_join_replay_bounded_by_bytes_too() -> None:
    tier = Tier(gop=300)
    frames = [tier.next() for _ in range(10)]
    snap = cache_of(frames).snapshot()
    assert plan_join(snap, GopConfig(max_replay_bytes=50_000)) == "join-keyframe-only"
    assert plan_join(snap, GopConfig(max_replay_bytes=100_000)) == "join-replay"


def test_join_with_empty_cache_waits_and_requests() -> None:
    q = GopViewerQueue[F]()
    d = q.join(GopSnapshot(), now=0)
    assert (d.reason, d.queued, d.request_keyframe) == ("join-wait", 0, True)
    assert q.waiting_for_keyframe and not q.started
    assert offer(q, F(5, False), FRAME_US).reason == "waiting-for-keyframe"
    assert offer(q, F(6, True), 2 * FRAME_US).reason == "keyframe"
    assert q.started and not q.waiting_for_keyframe
    assert [f.frame_id for f in drain(q)] == [6]


def test_join_from_truncated_cache_is_keyframe_only() -> None:
    tier = Tier(gop=300)
    cache = cache_of([tier.next() for _ in range(10)], max_frames=5)
    snap = cache.snapshot()
    assert not snap.complete and len(snap.frames) == 1 and cache.truncations == 1
    assert plan_join(snap) == "join-keyframe-only"


def test_viewer_that_falls_behind_flushes_waits_for_keyframe_and_asks_once_per_interval() -> None:
    cfg = GopConfig(max_queue_frames=8, max_queue_delay_us=10_000 * MS, keyframe_request_interval_us=500 * MS,
                    max_replay_frames=4)
    tier, q = Tier(gop=1000), GopViewerQueue[F](cfg)
    q.join(GopSnapshot(), 0)  # asks for a keyframe at t=0
    now = 1000 * MS
    offer(q, tier.next(force_key=True), now)
    sent = drain(q)
    # the link stalls: nothing is popped, frames pile up
    for _ in range(8):
        now += FRAME_US
        assert offer(q, tier.next(), now).reason == "in-order"
    now += FRAME_US
    d = offer(q, tier.next(), now)  # a ninth frame would not fit: 8 flushed + this one
    assert (d.reason, d.dropped, d.request_keyframe, d.drop_reason) == ("fell-behind", 9, True, "behind")
    assert q.queued_frames == 0 and q.waiting_for_keyframe
    requests = 1
    # while waiting: P-frames skipped, a new request at most every 500 ms
    for _ in range(40):  # 1.32 s
        now += FRAME_US
        d = offer(q, tier.next(), now)
        assert d.reason == "waiting-for-keyframe" and d.queued == 0 and d.drop_reason == "gop_wait"
        requests += d.request_keyframe
    assert requests == 3  # at 1.30 s, then 1.83 s and 2.35 s
    assert q.counters.keyframe_requests == 4  # the join's request too
    now += FRAME_US
    key = tier.next(force_key=True)
    assert offer(q, key, now).reason == "keyframe"
    for _ in range(3):
        now += FRAME_US
        offer(q, tier.next(), now)
    sent += drain(q)
    assert_decodable(sent)
    assert [f.frame_id for f in sent][-4:] == [key.frame_id + i for i in range(4)]
    assert q.counters.dropped["behind"] == 8 + 1 and q.counters.dropped["gop_wait"] == 40


def test_fall_behind_by_queue_delay() -> None:
    cfg = GopConfig(max_queue_frames=100, max_queue_delay_us=200 * MS)
    tier, q = Tier(gop=1000), GopViewerQueue[F](cfg)
    q.join(GopSnapshot(), 0)
    offer(q, tier.next(force_key=True), 0)
    now = 0
    while True:
        now += FRAME_US
        d = offer(q, tier.next(), now)
        if d.reason != "in-order":
            break
    assert d.reason == "fell-behind"
    assert 200 * MS < now <= 200 * MS + FRAME_US


def test_keyframe_arriving_while_frames_wait_replaces_them() -> None:
    tier, q = Tier(gop=4), GopViewerQueue[F](GopConfig(catch_up_frames=2))
    q.join(GopSnapshot(), 0)
    sent: list[F] = []
    offer(q, tier.next(), 0)  # key 1
    sent += drain(q)
    for i in range(3):  # P 2, 3, 4 queue up (link busy)
        offer(q, tier.next(), (i + 1) * FRAME_US)
    d = offer(q, tier.next(), 4 * FRAME_US)  # key 5
    assert (d.reason, d.dropped, d.queued, d.drop_reason) == ("caught-up", 3, 1, "catch_up")
    sent += drain(q)
    assert [f.frame_id for f in sent] == [1, 5]
    assert_decodable(sent)
    assert q.counters.dropped["catch_up"] == 3


def test_single_queued_frame_is_not_dropped_for_a_keyframe() -> None:
    tier, q = Tier(gop=2), GopViewerQueue[F](GopConfig(catch_up_frames=2))
    q.join(GopSnapshot(), 0)
    offer(q, tier.next(), 0)
    drain(q)
    offer(q, tier.next(), FRAME_US)  # P 2 waits for the link
    assert offer(q, tier.next(), 2 * FRAME_US).reason == "in-order"  # key 3 queues behind it
    assert [f.frame_id for f in drain(q)] == [2, 3]


def test_duplicates_are_ignored_and_a_restarted_stream_is_followed() -> None:
    q = GopViewerQueue[F]()
    q.join(GopSnapshot(), 0)
    assert offer(q, F(10, True), 0).reason == "keyframe"
    assert offer(q, F(11, False), 1).reason == "in-order"
    assert offer(q, F(11, False), 2).reason == "duplicate"
    assert offer(q, F(9, False), 3).reason == "duplicate"
    # the inference service restarted: ids start again, at an IDR
    assert offer(q, F(1, True), 4).reason == "caught-up"
    assert offer(q, F(2, False), 5).reason == "in-order"
    assert [f.frame_id for f in drain(q)] == [1, 2]


def test_break_chain_and_poll() -> None:
    cfg = GopConfig(keyframe_request_interval_us=500 * MS)
    tier, q = Tier(gop=100), GopViewerQueue[F](cfg)
    q.join(cache_of([tier.next() for _ in range(3)]).snapshot(), 0)
    assert not q.poll(0)  # in sync: nothing to ask
    d = q.break_chain(100 * MS)
    assert (d.reason, d.dropped, d.request_keyframe, d.drop_reason) == ("chain-broken", 3, True, "chain_broken")
    assert not q.poll(300 * MS)
    assert q.poll(600 * MS)
    assert not q.poll(700 * MS)
    assert offer(q, tier.next(), 800 * MS).reason == "waiting-for-keyframe"


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        GopConfig(max_queue_frames=0)
    with pytest.raises(ValueError):
        GopConfig(max_queue_delay_us=0)
    with pytest.raises(ValueError, match="must exceed max_replay_frames"):
        GopConfig(max_queue_frames=10, max_replay_frames=10)


_EVENTS = ["frame"] * 6 + ["idle", "join", "force_key", "break"]


@settings(max_examples=250, deadline=None)
@given(gop=st.integers(1, 40),
       script=st.lists(st.tuples(st.sampled_from(_EVENTS), st.integers(0, 3)), min_size=20, max_size=200))
def test_property_sent_stream_always_decodable(gop: int, script: list[tuple[str, int]]) -> None:
    """Whatever arrives and however the link behaves, every run of sent frames is decodable.

    Each step is one event then `n` pops (the link taking 0-3 frames): fewer pops than frames means the
    viewer falls behind, idle steps make queued frames old, joins and chain breaks start a new decoder.
    """
    tier = Tier(gop=gop)
    cache: GopCache[F] = GopCache(max_frames=20, max_bytes=150_000)
    q = GopViewerQueue[F](GopConfig(max_queue_frames=6, max_queue_delay_us=150 * MS, max_replay_frames=5))
    q.join(cache.snapshot(), 0)
    sent: list[F] = []
    runs: list[list[F]] = [sent]
    now = 0
    for op, pops in script:
        now += FRAME_US
        if op in ("frame", "force_key"):
            f = tier.next(force_key=op == "force_key")
            cache.add(f, f.frame_id, f.keyframe, f.nbytes, now)
            offer(q, f, now)
        elif op == "idle":
            now += 100 * MS
        elif op == "join":  # a fresh connection: a new decoder
            sent = []
            runs.append(sent)
            q.join(cache.snapshot(), now)
        elif op == "break":
            q.break_chain(now)
            sent = []  # the viewer's decoder is told to wait for a keyframe too
            runs.append(sent)
        for _ in range(pops):
            if (item := q.pop()) is not None:
                sent.append(item)
        assert q.queued_frames <= 6
    for run in runs:
        if run:
            assert_decodable(run)


# --- cache -----------------------------------------------------------------

def test_cache_keeps_last_keyframe_and_followers() -> None:
    tier = Tier(gop=5)
    cache = cache_of([tier.next() for _ in range(8)])
    snap = cache.snapshot()
    assert [f.frame_id for f in snap.frames] == [6, 7, 8] and snap.complete and snap.nbytes == 30_000
    assert len(cache) == 3 and cache.nbytes == 30_000


def test_cache_ignores_p_frames_before_the_first_keyframe() -> None:
    cache: GopCache[F] = GopCache()
    cache.add(F(1, False), 1, False, 10, 0)
    assert len(cache) == 0 and not cache.snapshot().complete


def test_cache_bounded_in_count_and_bytes() -> None:
    tier = Tier(gop=1000)
    by_count = cache_of([tier.next() for _ in range(50)], max_frames=10)
    assert len(by_count) == 1 and not by_count.snapshot().complete
    tier = Tier(gop=1000)
    by_bytes = cache_of([tier.next() for _ in range(50)], max_bytes=45_000)
    assert len(by_bytes) == 1 and by_bytes.nbytes == 10_000
    # the next keyframe starts a complete GOP again
    by_bytes.add(F(100, True), 100, True, 10_000, 0)
    by_bytes.add(F(101, False), 101, False, 10_000, 0)
    assert by_bytes.snapshot().complete and len(by_bytes) == 2


def test_cache_break_chain_and_clear() -> None:
    tier = Tier(gop=100)
    cache = cache_of([tier.next() for _ in range(5)])
    cache.break_chain()
    assert len(cache) == 1 and not cache.snapshot().complete
    cache.add(F(6, False), 6, False, 10, 0)  # cannot follow: the chain is broken
    assert len(cache) == 1
    cache.add(F(5, False), 5, False, 10, 0)
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    with pytest.raises(ValueError):
        GopCache(max_frames=0)


def test_cache_ignores_duplicates() -> None:
    cache = cache_of([F(1, True), F(2, False), F(2, False), F(1, False)])
    assert [f.frame_id for f in cache.snapshot().frames] == [1, 2]


def test_rejoin_reports_the_frames_it_flushes() -> None:
    tier, q = Tier(gop=100), GopViewerQueue[F]()
    q.join(GopSnapshot(), 0)
    for i in range(3):
        offer(q, tier.next(), i * FRAME_US)
    cache = cache_of([F(50, True), F(51, False)])
    d = q.join(cache.snapshot(), 5 * FRAME_US)  # e.g. back to this tier after a switch
    assert (d.reason, d.queued, d.dropped, d.drop_reason) == ("join-replay", 2, 3, "chain_broken")
    assert [f.frame_id for f in drain(q)] == [50, 51]
