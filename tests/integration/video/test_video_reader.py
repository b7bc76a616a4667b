"""read_video_frames against a real Valkey: every entry in order, from a keyframe, gaps flagged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from framecast import constants as C
from framecast.bus import Backoff, Keys, async_client, read_frames, sync_client
from framecast.bus.read import VideoEntry, read_video_frames
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import FrameHeader, decode_header, encode_frame
from tests.support.timing import scaled

KEY = Keys("fcvid:").frames("demo", "video-high")


def message(frame_id: int, key: bool) -> bytes:
    header = FrameHeader(frame_id=frame_id, capture_us=frame_id, width=160, height=90, codec=C.CODEC_H264,
                         quality=0, flags=C.FLAG_KEYFRAME if key else 0)
    return encode_frame(header, b"\x00\x00\x00\x01" + bytes([0x65 if key else 0x41]) + b"x" * 100)


def publish(client: redis.Redis, ids: range, gop: int = 10, maxlen: int | None = None) -> None:
    for i in ids:
        client.xadd(KEY, {C.FRAME_FIELD: message(i, i % gop == 0)}, maxlen=maxlen, approximate=False)


async def take(gen: AsyncIterator[VideoEntry], n: int) -> list[tuple[int, bool]]:
    out = []
    for _ in range(n):
        entry = await asyncio.wait_for(anext(gen), scaled(5))
        out.append((decode_header(entry.message).frame_id, entry.gap))
    return out


async def blocked_reader(sync: redis.Redis) -> None:
    deadline = asyncio.get_running_loop().time() + scaled(5)
    while int(sync.info("clients")["blocked_clients"]) < 1:
        assert asyncio.get_running_loop().time() < deadline, "the reader never blocked on XREAD"
        await asyncio.sleep(0.01)


Clients = tuple[redis.Redis, aioredis.Redis]


@pytest.fixture
def clients(redis_server: EmbeddedRedis) -> Iterator[Clients]:
    sync = sync_client(redis_server.url)
    aio = async_client(redis_server.url, block_ms=200)
    yield sync, aio
    sync.close()


async def test_starts_at_the_newest_keyframe_and_yields_every_entry_in_order(clients: Clients) -> None:
    sync, aio = clients
    publish(sync, range(0, 14))  # keyframes 0 and 10
    gen = read_video_frames(aio, KEY, block_ms=200)
    assert await take(gen, 4) == [(10, True), (11, False), (12, False), (13, False)]
    publish(sync, range(14, 30))  # the reader lags 16 entries behind: all of them still come, in order
    got = await take(gen, 16)
    assert [fid for fid, _ in got] == list(range(14, 30)) and not any(gap for _, gap in got)
    await gen.aclose()
    await aio.aclose()


async def test_jpeg_reader_would_skip_what_the_video_reader_delivers(clients: Clients) -> None:
    """Why a video twin exists: the JPEG reader keeps only the newest entry of a batch."""
    sync, aio = clients
    publish(sync, range(0, 3))
    jpeg = read_frames(aio, KEY, block_ms=200)
    assert decode_header(await asyncio.wait_for(anext(jpeg), scaled(5))).frame_id == 2
    publish(sync, range(3, 8))
    assert decode_header(await asyncio.wait_for(anext(jpeg), scaled(5))).frame_id == 7  # 3..6 never seen
    await jpeg.aclose()  # type: ignore[attr-defined]
    await aio.aclose()


async def test_no_keyframe_in_reach_yields_the_following_entries_flagged(clients: Clients) -> None:
    sync, aio = clients
    publish(sync, range(1, 9))  # P-frames only
    gen = read_video_frames(aio, KEY, block_ms=2000, backlog=5)
    pending = asyncio.ensure_future(take(gen, 3))
    await blocked_reader(sync)  # it looked back, found no keyframe, and now waits for new entries
    publish(sync, range(9, 12))  # 10 is a keyframe
    assert await asyncio.wait_for(pending, scaled(5)) == [(9, True), (10, False), (11, False)]
    await gen.aclose()
    await aio.aclose()


async def test_entries_trimmed_under_a_lagging_reader_restart_at_a_keyframe(clients: Clients) -> None:
    sync, aio = clients
    publish(sync, range(0, 3))
    gen = read_video_frames(aio, KEY, block_ms=200, count=4)
    assert await take(gen, 3) == [(0, True), (1, False), (2, False)]
    publish(sync, range(3, 25), maxlen=6)  # 3..18 trimmed before the reader looks again; 20 is a keyframe
    assert await take(gen, 5) == [(20, True), (21, False), (22, False), (23, False), (24, False)]
    await gen.aclose()
    await aio.aclose()


async def test_reconnect_resumes_after_the_last_entry_without_a_gap(redis_server: EmbeddedRedis) -> None:
    sync = sync_client(redis_server.url)
    aio = async_client(redis_server.url, block_ms=200)
    errors: list[BaseException] = []
    gen = read_video_frames(aio, KEY, block_ms=200, backoff=Backoff(0.01, 0.05), on_error=errors.append)
    publish(sync, range(0, 3))
    assert await take(gen, 3) == [(0, True), (1, False), (2, False)]
    # Redis restarts empty (no persistence): the old entries are gone, a new GOP comes
    redis_server.kill()
    pending = asyncio.ensure_future(take(gen, 3))
    deadline = asyncio.get_running_loop().time() + scaled(10)
    while not errors:
        assert asyncio.get_running_loop().time() < deadline, "the reader never noticed the restart"
        await asyncio.sleep(0.02)
    redis_server.start()
    sync = sync_client(redis_server.url)
    publish(sync, range(100, 103))  # 100 is a keyframe
    assert await asyncio.wait_for(pending, scaled(10)) == [(100, True), (101, False), (102, False)]
    await gen.aclose()
    await aio.aclose()
    sync.close()
