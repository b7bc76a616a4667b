"""Keyframe requests through a real Valkey: edge SET EX -> encoder side GETDEL -> an IDR in the output."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aioredis

from framecast.bus import Keys, async_client, now_us, sync_client
from framecast.bus.signals import DEFAULT_REQUEST_TTL_S, AsyncKeyframeRequester, KeyframeRequestPoller
from framecast.codecs.h264_encoder import H264Encoder
from framecast.dev.embedded import EmbeddedRedis

from .conftest import Image

KEYS = Keys("fctest:")


@contextlib.asynccontextmanager
async def bus_clients(url: str) -> AsyncIterator[tuple[redis.Redis, aioredis.Redis]]:
    """The encoder side's sync client and the edge side's async client of one server, closed at the end."""
    client, aclient = sync_client(url), async_client(url)
    try:
        yield client, aclient
    finally:
        await aclient.aclose()
        client.close()


async def test_request_is_consumed_once_with_its_time(any_redis: EmbeddedRedis) -> None:
    async with bus_clients(any_redis.url) as (client, aclient):
        edge = AsyncKeyframeRequester(aclient, KEYS, edge_id="edge-a", min_interval_s=0.25)
        poller = KeyframeRequestPoller(client, KEYS, "demo", min_interval_s=0.0)
        before = now_us()
        assert edge.request_nowait("demo", "video-high", now=100.0)
        await edge.drain()
        key = KEYS.keyframe_request("demo", "video-high")
        assert 0 < client.pttl(key) <= DEFAULT_REQUEST_TTL_S * 1000  # a short expiry: stale requests vanish
        assert client.get(key).decode().endswith(" edge-a")  # type: ignore[union-attr]
        found = poller.poll(["video-high", "video-low"], now=100.0)
        assert [r.tier for r in found] == ["video-high"]
        assert found[0].request_us is not None and before <= found[0].request_us <= now_us()
        assert poller.poll(["video-high", "video-low"], now=100.1) == []  # consumed: GETDEL
        assert client.exists(key) == 0


async def test_both_sides_are_rate_limited(redis_server: EmbeddedRedis) -> None:
    async with bus_clients(redis_server.url) as (client, aclient):
        edge = AsyncKeyframeRequester(aclient, KEYS, edge_id="edge-a", min_interval_s=0.25)
        poller = KeyframeRequestPoller(client, KEYS, "demo", min_interval_s=0.05)
        # forty viewers of one edge falling behind at once: one SET
        sent = sum(edge.request_nowait("demo", "v", now=10.0 + i * 0.001) for i in range(40))
        assert sent == 1 and edge.limiter.limited == 39
        assert edge.request_nowait("demo", "w", now=10.0)  # another tier is not limited by the first
        await edge.drain()
        assert len(poller.poll(["v", "w"], now=20.0)) == 2
        assert edge.request_nowait("demo", "v", now=10.3)
        await edge.drain()
        assert poller.poll(["v"], now=20.01) == []  # polled too soon: not even asked
        assert [r.tier for r in poller.poll(["v"], now=20.06)] == ["v"]
        assert poller.polls == 2 and poller.consumed == 3
        assert poller.poll([], now=30.0) == []


async def test_requests_of_many_edges_collapse_into_one(redis_server: EmbeddedRedis) -> None:
    async with bus_clients(redis_server.url) as (client, aclient):
        edges = [AsyncKeyframeRequester(aclient, KEYS, edge_id=f"edge-{i}") for i in range(5)]
        for edge in edges:
            assert edge.request_nowait("demo", "v", now=1.0)
        for edge in edges:
            await edge.drain()
        found = KeyframeRequestPoller(client, KEYS, "demo").poll(["v"], now=1.0)
        assert len(found) == 1  # one key per tier: one IDR for all of them


async def test_request_nowait_sets_in_the_background_and_survives_a_dead_redis(redis_server: EmbeddedRedis) -> None:
    client = async_client(redis_server.url)
    try:
        edge = AsyncKeyframeRequester(client, KEYS, edge_id="edge-bg", min_interval_s=0.25)
        assert edge.request_nowait("demo", "v", now=1.0)  # no await: callable from a viewer's offer()
        assert not edge.request_nowait("demo", "v", now=1.1)
        await edge.drain()
        assert await client.exists(KEYS.keyframe_request("demo", "v")) == 1
        redis_server.kill()
        assert edge.request_nowait("demo", "v", now=2.0)
        await edge.drain()  # the error is counted and logged, not raised
        assert edge.failed == 1
    finally:
        await client.aclose()


async def test_edge_request_reaches_the_encoder_as_an_idr(redis_server: EmbeddedRedis,
                                                         small_frames: list[Image]) -> None:
    """The whole path: viewer needs a keyframe -> edge SET -> inference GETDEL -> request_keyframe -> IDR."""
    aclient = async_client(redis_server.url)
    sclient = sync_client(redis_server.url)
    try:
        enc = H264Encoder(320, 180, bitrate=300_000, keyframe_interval_s=60.0, min_keyframe_gap_s=0.1,
                          input_format="bgr24")
        poller = KeyframeRequestPoller(sclient, KEYS, "demo", min_interval_s=0.0)
        edge = AsyncKeyframeRequester(aclient, KEYS, edge_id="edge-1")
        t0 = time.monotonic()
        reasons = []
        for i in range(30):
            now = t0 + i / 30
            if i == 12:
                assert edge.request_nowait("demo", "video-high", now=now)
                await edge.drain()
            for _request in poller.poll(["video-high"], now=now):
                enc.request_keyframe(now=now)
            out = enc.encode(small_frames[i], now=now)
            reasons.append(out.keyframe_reason)
        assert reasons[0] == "first" and reasons[12] == "requested"
        assert reasons.count("requested") == 1 and sum(r is not None for r in reasons) == 2
    finally:
        await aclient.aclose()
        sclient.close()
