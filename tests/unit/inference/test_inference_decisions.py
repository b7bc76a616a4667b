"""Pure decisions of the pipeline, driven by a fake clock: demand policy, pacing, newest-wins hand-off."""

from __future__ import annotations

import threading

from framecast.inference.pipeline import LatestSlot
from framecast.inference.publish import DemandPolicy
from framecast.inference.sources import Pacer


def test_demanded_tiers_are_encoded_every_frame() -> None:
    policy = DemandPolicy(3, idle_fps=1.0)
    policy.update({2, 0}, now=10.0)
    assert [policy.select(10.0 + i / 30) for i in range(3)] == [[0, 2]] * 3


def test_no_demand_publishes_the_lowest_tier_at_the_idle_rate() -> None:
    policy = DemandPolicy(3, idle_fps=2.0)
    policy.update(set(), now=0.0)
    picked = [t for t in (i / 30 for i in range(60)) if policy.select(t)]  # two seconds of frames at 30 fps
    assert len(picked) == 4
    assert policy.select(2.0) == [2]


def test_idle_rate_zero_publishes_nothing() -> None:
    policy = DemandPolicy(3, idle_fps=0.0)
    assert all(policy.select(i / 30) == [] for i in range(90))


def test_stale_demand_counts_as_none() -> None:
    policy = DemandPolicy(3, idle_fps=0.0, stale_after=3.0)
    policy.update({0}, now=0.0)
    assert policy.select(2.9) == [0]
    assert policy.select(3.1) == []  # Redis unreachable for a while: do not encode for nobody


def test_publish_all_ignores_demand() -> None:
    policy = DemandPolicy(3, publish_all=True)
    assert policy.select(0.0) == [0, 1, 2]


def test_pacer_spaces_frames_and_never_bursts_after_a_stall() -> None:
    pacer = Pacer(10.0)
    assert pacer.wait_time(0.0) == 0.0
    pacer.mark(0.0)
    assert abs(pacer.wait_time(0.04) - 0.06) < 1e-9
    pacer.mark(0.1)
    pacer.mark(0.21)  # slightly late: the schedule holds (next at 0.3)
    assert abs(pacer.wait_time(0.25) - 0.05) < 1e-9
    pacer.mark(5.0)  # a long stall: restart from now instead of catching up with a burst
    assert abs(pacer.wait_time(5.0) - 0.1) < 1e-9


def test_latest_slot_newest_wins() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1  # the displaced frame is reported so it can be counted
    assert slot.get(0.0) == 2
    assert slot.get(0.0) is None


def test_latest_slot_wakes_a_waiting_consumer() -> None:
    slot: LatestSlot[str] = LatestSlot()
    got: list[str | None] = []
    consumer = threading.Thread(target=lambda: got.append(slot.get(5.0)))
    consumer.start()
    slot.put("frame")
    consumer.join(5.0)
    assert got == ["frame"]


def test_latest_slot_never_goes_back_in_time() -> None:
    slot: LatestSlot[int] = LatestSlot()

    def newer(a: int, b: int) -> bool:
        return a > b

    assert slot.put_if_newer(5, newer) == (True, None)
    assert slot.put_if_newer(4, newer) == (False, 4)  # an overtaken frame is refused
    assert slot.put_if_newer(7, newer) == (True, 5)  # a newer one displaces the waiting one
    assert slot.get(0.0) == 7
    assert slot.put_if_newer(6, newer) == (True, None)  # empty slot: ordering is the publisher's job then


def test_publisher_refuses_frames_older_than_the_last_one() -> None:
    import redis

    from framecast.bus import Keys
    from framecast.inference import metrics as M
    from framecast.inference.publish import EncodedFrame, FramePublisher
    from framecast.ladder import parse_ladder

    ladder = parse_ladder("a=64x48@80")
    M.init_series(["a"])
    # nothing listens on port 9: a frame that reached Redis would be counted as a redis_error instead
    publisher = FramePublisher(redis.Redis(port=9, socket_connect_timeout=0.2), "s", Keys(), ladder, maxlen=5,
                               ids_synced=True)
    publisher.last_frame_id = 10
    before = M.DROPPED.labels("reordered")._value.get()
    assert publisher.publish(EncodedFrame(9, 0, [])) is False
    assert M.DROPPED.labels("reordered")._value.get() == before + 1
