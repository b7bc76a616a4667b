"""The Redis Streams bus against real servers: trimming, newest-first reads, reconnect without backlog."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from framecast import constants as C
from framecast.bus import Backoff, BusPublisher, Keys, StreamInfo, async_client, now_us, read_frames, sync_client
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import FrameHeader, TierInfo, decode_frame, encode_frame
from tests.support.timing import scaled

KEYS = Keys()


def _message(frame_id: int) -> bytes:
    header = FrameHeader(frame_id=frame_id, capture_us=frame_id, width=4, height=4)
    return encode_frame(header, b"\xff\xd8" + bytes(100))


def test_publish_trims_and_heartbeats(any_redis: EmbeddedRedis) -> None:
    client = sync_client(any_redis.url)
    pub = BusPublisher(client, "demo", keys=KEYS, maxlen=10)
    for i in range(500):
        pub.publish({"high": _message(i), "low": _message(i)}, capture_us=i)
    for tier in ("high", "low"):
        n = client.xlen(KEYS.frames("demo", tier))
        assert 10 <= n <= 200, n  # MAXLEN ~ trims in whole macro-nodes
    assert int(client.get(KEYS.heartbeat("demo")) or 0) == 499
    assert client.zscore(KEYS.streams_index(), "demo") is None  # the index is written by the heartbeat only
    pub.heartbeat(StreamInfo(stream="demo", tiers=(TierInfo(name="high", width=0, height=0, quality=0),), fps=30.0))
    assert abs((client.zscore(KEYS.streams_index(), "demo") or 0) - now_us()) < 10e6
    assert StreamInfo.from_json(client.get(KEYS.meta("demo")) or b"").fps == 30.0
    assert 0 < client.ttl(KEYS.meta("demo")) <= 10


def test_server_is_memory_capped(any_redis: EmbeddedRedis) -> None:
    info = sync_client(any_redis.url).config_get("maxmemory*")
    assert int(info["maxmemory"]) > 0 and info["maxmemory-policy"] == "noeviction"


def test_demand(redis_server: EmbeddedRedis) -> None:
    client = sync_client(redis_server.url)
    pub = BusPublisher(client, "demo", keys=KEYS, maxlen=10)
    assert pub.demanded(["high", "low"]) == set()
    client.set(KEYS.demand("demo", "low"), "edge-1", px=200)
    assert pub.demanded(["high", "low"]) == {"low"}
    deadline = time.monotonic() + scaled(3)
    while pub.demanded(["high", "low"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pub.demanded(["high", "low"]) == set()


async def test_reader_starts_with_newest_then_follows(redis_server: EmbeddedRedis) -> None:
    client = sync_client(redis_server.url)
    pub = BusPublisher(client, "demo", keys=KEYS, maxlen=100)
    for i in range(5):
        pub.publish({"high": _message(i)}, capture_us=i)
    aclient = async_client(redis_server.url, block_ms=200)
    frames = read_frames(aclient, KEYS.frames("demo", "high"), block_ms=200)
    first = decode_frame(await asyncio.wait_for(anext(frames), scaled(5)))
    assert first.header.frame_id == 4  # the newest at once, not the backlog
    pub.publish({"high": _message(5)}, capture_us=5)
    nxt = decode_frame(await asyncio.wait_for(anext(frames), scaled(5)))
    assert nxt.header.frame_id == 5
    await frames.aclose()
    await aclient.aclose()


async def test_reader_survives_redis_restart_without_backlog(redis_server: EmbeddedRedis) -> None:
    errors: list[BaseException] = []
    aclient = async_client(redis_server.url, block_ms=200, timeout=0.5)
    frames = read_frames(aclient, KEYS.frames("demo", "high"), block_ms=200, backoff=Backoff(0.05, 0.3),
                         on_error=errors.append)
    client = sync_client(redis_server.url)
    BusPublisher(client, "demo", keys=KEYS, maxlen=100).publish({"high": _message(1)}, capture_us=1)
    assert decode_frame(await asyncio.wait_for(anext(frames), scaled(5))).header.frame_id == 1

    redis_server.kill()
    pending = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0.5)
    assert not pending.done()
    redis_server.start()
    client = sync_client(redis_server.url)
    pub = BusPublisher(client, "demo", keys=KEYS, maxlen=100)
    for i in range(10, 40):  # a backlog written while the reader reconnects
        pub.publish({"high": _message(i)}, capture_us=i)
    got = decode_frame(await asyncio.wait_for(pending, scaled(10))).header.frame_id
    assert got == 39, "after a reconnect the reader resumes at the newest entry"
    assert errors, "the failure was reported"
    await frames.aclose()
    await aclient.aclose()


def test_backoff_is_jittered_and_capped() -> None:
    import random

    b = Backoff(base=0.1, cap=1.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(10)]
    assert all(0.05 <= d <= 1.0 for d in delays) and max(delays) > 0.5
    b.reset()
    assert b.next_delay() <= 0.1


def test_frame_field_constant() -> None:
    assert C.FRAME_FIELD == b"m"
    with pytest.raises(redis.ConnectionError):
        sync_client("redis://127.0.0.1:1/0", timeout=0.2).ping()
