"""Client behaviour against a scripted fake edge (real sockets): acks, hello, close codes, reconnects."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from framecast import constants as C
from framecast.client import (
    ClientError,
    ConnectError,
    ConnectionLost,
    ProtocolError,
    ReconnectPolicy,
    Subscription,
    connect,
    connect_sync,
    probe,
)
from tests.support.timing import scaled, wait_until_async
from tests.unit.client.framecast_fake_edge import FakeEdge, Plan

FAST = ReconnectPolicy(base_s=0.02, cap_s=0.1, restart_min_s=0.01, restart_max_s=0.05, try_later_base_s=0.4,
                       try_later_cap_s=0.8)


async def take(sub: Subscription, n: int) -> list[int]:
    ids = []
    async with asyncio.timeout(scaled(10)):
        async for frame in sub:
            ids.append(frame.frame_id)
            if len(ids) >= n:
                break
    return ids


async def test_frames_hello_and_acks(fake_edge: FakeEdge) -> None:
    async with connect(fake_edge.url, stream="demo", client_id="unit-1", tier="auto") as sub:
        assert sub.hello is not None and sub.hello.server == "fake-edge"
        assert [t.name for t in sub.tiers] == ["high", "low"]
        frames = []
        async for frame in sub:
            frames.append(frame)
            if len(frames) == 5:
                break
        await sub.next()  # consuming the 6th acks the 5th
        await wait_until_async("acks", lambda: len(fake_edge.acks) >= 5, 5.0)
    assert fake_edge.hellos[0]["client_id"] == "unit-1"
    assert fake_edge.hellos[0]["tier"] == "auto" and fake_edge.hellos[0]["codecs"] == ["jpeg"]
    ids = [f.frame_id for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert fake_edge.acks[:5] == ids
    first = frames[0]
    assert (first.width, first.height, first.tier_name, first.codec) == (64, 48, "high", "jpeg")
    assert 0 <= first.latency_ms < 1000
    image = first.image()
    assert image.shape == (48, 64, 3)
    assert sub.state == "closed"


async def test_ack_on_receipt_and_stats_messages(fake_edge: FakeEdge) -> None:
    async with connect(fake_edge.url, ack="received", stats_interval_s=0.05) as sub:
        ids = await take(sub, 20)
        await wait_until_async("acks", lambda: len(fake_edge.acks) >= 20, 5.0)
    assert fake_edge.acks[:20] == ids
    assert fake_edge.stats and fake_edge.stats[-1]["fps"] > 0


async def test_no_acks_in_legacy_mode(fake_edge: FakeEdge) -> None:
    async with connect(fake_edge.url, ack="none") as sub:
        await take(sub, 5)
    assert fake_edge.acks == []


async def test_set_pins_a_tier(fake_edge: FakeEdge) -> None:
    async with connect(fake_edge.url) as sub:
        await take(sub, 2)
        await sub.set(tier="low", max_fps=10)
        async with asyncio.timeout(scaled(5)):
            async for frame in sub:
                if frame.tier_name == "low":
                    break
        assert frame.width == 32
    assert fake_edge.sets == [{"type": "set", "tier": "low", "max_fps": 10.0}]
    with pytest.raises(ClientError, match="invalid tier"):
        await sub.set(tier="NOT A TIER")


async def test_unknown_stream_is_a_clear_fatal_error(fake_edge: FakeEdge) -> None:
    with pytest.raises(ConnectError, match="unknown stream 'nope'") as info:
        async with connect(fake_edge.url, stream="nope"):
            pass
    assert info.value.fatal and info.value.close_code == C.CLOSE_UNKNOWN_STREAM


async def test_auth_failure_is_fatal() -> None:
    async with FakeEdge(plans=[Plan(refuse=C.CLOSE_AUTH_FAILED)]) as edge:
        with pytest.raises(ConnectError, match="authentication failed"):
            async with connect(edge.url, policy=FAST):
                pass


async def test_unreachable_edge() -> None:
    edge = await FakeEdge().start()
    url = edge.url
    await edge.stop()
    with pytest.raises(ConnectError, match="cannot reach"):
        async with connect(url):
            pass


async def test_reconnects_after_1012_restart() -> None:
    plan = Plan(close_after=3, close_code=C.CLOSE_SERVICE_RESTART)
    async with FakeEdge(plans=[plan]) as edge, connect(edge.url, policy=FAST) as sub:
        ids = await take(sub, 8)
        assert sub.reconnects == 1
        assert sub.close_code == C.CLOSE_SERVICE_RESTART
        assert sub.state == "live"
    assert edge.connections == 2 and len(edge.hellos) == 2
    assert ids == sorted(ids)


async def test_1013_backs_off_longer() -> None:
    plan = Plan(close_after=1, close_code=C.CLOSE_TRY_AGAIN_LATER)
    async with FakeEdge(plans=[plan]) as edge, connect(edge.url, policy=FAST) as sub:
        await take(sub, 1)
        t0 = time.monotonic()
        await take(sub, 1)
        assert time.monotonic() - t0 >= FAST.try_later_base_s / 2
        assert sub.reconnects == 1


async def test_reconnects_after_abrupt_loss_and_counts_no_drops_across_it() -> None:
    async with FakeEdge(plans=[Plan(drop_connection_after=3)]) as edge, connect(edge.url, policy=FAST) as sub:
        await take(sub, 6)
        assert sub.reconnects == 1 and sub.close_code == 1006
        assert sub.stats.dropped == 0


async def test_no_reconnect_raises_connection_lost() -> None:
    plan = Plan(close_after=2, close_code=C.CLOSE_SERVICE_RESTART, close_reason="restart")
    async with FakeEdge(plans=[plan]) as edge, connect(edge.url, reconnect=False) as sub:
        with pytest.raises(ConnectionLost, match="1012: restart"):
            await take(sub, 5)


async def test_unknown_stream_while_reconnecting_is_retried() -> None:
    plans = [Plan(close_after=2, close_code=1011), Plan(refuse=C.CLOSE_UNKNOWN_STREAM)]
    async with FakeEdge(plans=plans) as edge, connect(edge.url, policy=FAST) as sub:
        await take(sub, 4)
        assert sub.reconnects == 1 and edge.connections == 3


async def test_a_reconnect_refused_by_a_draining_replica_is_retried() -> None:
    # behind a load balancer the reconnect may land on the replica that is draining: it says 1012 again
    plans = [Plan(close_after=2), Plan(refuse=C.CLOSE_SERVICE_RESTART), Plan(refuse=C.CLOSE_SERVICE_RESTART)]
    async with FakeEdge(plans=plans) as edge, connect(edge.url, policy=FAST) as sub:
        await take(sub, 4)
        assert sub.reconnects == 1 and edge.connections == 4 and sub.state == "live"


async def test_a_reconnect_refused_for_good_ends_the_subscription() -> None:
    plans = [Plan(close_after=2), Plan(refuse=C.CLOSE_POLICY_VIOLATION)]
    async with FakeEdge(plans=plans) as edge, connect(edge.url, policy=FAST) as sub:
        with pytest.raises(ProtocolError, match="1008"):
            await take(sub, 4)
        assert edge.connections == 2


async def test_reconnect_gives_up_after_timeout() -> None:
    edge = await FakeEdge(plans=[Plan(close_after=1)]).start()
    async with connect(edge.url, policy=FAST, reconnect_timeout=0.5) as sub:
        await take(sub, 1)
        await edge.stop()
        with pytest.raises(ConnectionLost, match="gave up reconnecting"):
            await take(sub, 1)


async def test_normal_close_ends_iteration() -> None:
    async with FakeEdge(plans=[Plan(close_after=3, close_code=C.CLOSE_NORMAL)]) as edge, connect(edge.url) as sub:
        ids = [f.frame_id async for f in sub]
    assert len(ids) == 3 and sub.state == "closed"


async def test_malformed_frame_raises_protocol_error() -> None:
    async with FakeEdge(plans=[Plan(garbage_after=2)]) as edge, connect(edge.url) as sub:
        with pytest.raises(ProtocolError, match="bad magic"):
            await take(sub, 5)


async def test_status_tier_and_unknown_messages() -> None:
    before = [json.dumps({"type": "status", "state": "stalled", "detail": "no frames"}),
              json.dumps({"type": "future-thing", "x": 1}),
              json.dumps({"type": "tier", "tier": "low", "reason": "slow link"})]
    async with FakeEdge(plans=[Plan(before_frames=before)]) as edge, connect(edge.url) as sub:
        await take(sub, 1)
        assert sub.status is not None and sub.status.state == "stalled"
        assert sub.state == "live"  # frames flow again
        assert sub.ignored_messages == 1 and sub.tier_changes == 1


async def test_malformed_control_message_raises() -> None:
    plan = Plan(before_frames=['{"type": "status", "state": "bogus"}'])
    async with FakeEdge(plans=[plan]) as edge, connect(edge.url) as sub:
        with pytest.raises(ProtocolError, match="unknown status state"):
            await take(sub, 1)


async def test_edge_without_hello_still_works() -> None:
    async with FakeEdge(plans=[Plan(send_hello=False)]) as edge, connect(edge.url) as sub:
        await take(sub, 3)
        assert sub.hello is None and sub.tier == "tier-0"


async def test_id_gaps_count_as_drops() -> None:
    async with FakeEdge(plans=[Plan(skip_ids=2)]) as edge, connect(edge.url) as sub:
        await take(sub, 5)
        assert sub.stats.dropped == 8


def test_bad_arguments() -> None:
    with pytest.raises(ClientError, match="unsupported URL scheme"):
        connect("ftp://x")
    with pytest.raises(ClientError, match="invalid tier"):
        connect("http://x", tier="Best Tier")
    with pytest.raises(ClientError, match="ack mode"):
        connect("http://x", ack="sometimes")  # type: ignore[arg-type]


async def test_probe_reports_tiers_and_throughput(fake_edge: FakeEdge) -> None:
    result = await probe(fake_edge.url, seconds_per_tier=0.3, burst_seconds=0.3)
    assert [t.name for t in result.tiers] == ["high", "low"]
    assert all(t.frames > 2 and t.fps > 5 for t in result.tiers)
    assert result.throughput_method == "snapshot-burst" and result.throughput_mbit_s
    assert result.recommended_tier in ("high", "low")  # the choice itself: test_recommend_*
    assert result.rtt_ms["min"] > 0
    assert {"type": "set", "tier": "low"} in fake_edge.sets


def test_connect_sync(threaded_fake_edge: FakeEdge) -> None:
    with connect_sync(threaded_fake_edge.url, client_id="sync") as sub:
        frames = []
        for frame in sub:
            frames.append(frame)
            if len(frames) == 3:
                break
        assert sub.hello is not None and sub.state == "live"
    assert [f.frame_id for f in frames] == sorted(f.frame_id for f in frames)
    assert threaded_fake_edge.hellos[0]["client_id"] == "sync"
