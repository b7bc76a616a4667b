"""H.264 tiers through the real stack when the edge lags, and when a viewer joins a tier that was idle.

Real Valkey, real `python -m framecast.inference` (libx264), real edge on
uvicorn, a raw websockets viewer offering h264. The edge process is paused
(SIGSTOP/SIGCONT) several times while the viewer watches, so its bus reader
finds a batch of entries waiting when it resumes; every picture the viewer
gets must still have its reference. That is checked in the bitstream: the
frame_num of each picture's first slice header must follow the previous
reference picture's (H.264 7.4.3; the encoder allows no gaps), and PyAV
decodes every picture without an error.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framecast import constants as C
from framecast.bus import Keys, now_us, sync_client
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import Ack, ClientHello, Frame, decode_frame, decode_header, encode_control
from tests.integration.client.stack import EDGE_ARGS, require_services, wait_ready
from tests.integration.video.h264_check import ChainCheck
from tests.support.procs import Service, edge_service, inference_service, running, service_port
from tests.support.timing import scaled, wall_us
from tests.support.viewer import messages, open_viewer

pytest.importorskip("av")

SMALL = ["--width", "320", "--height", "180", "--fps", "15", "--torch-threads", "1", "--encode-threads", "1",
         "--video-encoder", "libx264", "--log-level", "warning"]
STALL_AFTER_S = 2.0  # the edge's default stall threshold


# --- a viewer that keeps every H.264 message --------------------------------------------------------


@dataclass
class Received:
    frame: Frame
    recv_wall_us: int
    recv_mono: float


async def watch(url: str, until: asyncio.Event, tier: str = "auto") -> list[Received]:
    """Frames a pinned H.264 viewer gets (acking each) until `until` is set."""
    got: list[Received] = []
    async with open_viewer(url) as ws:
        await ws.send(encode_control(ClientHello(codecs=("h264", "jpeg"), tier=tier)))
        async for now, msg in messages(ws, stop=until.is_set, poll=0.1):
            if isinstance(msg, dict):
                assert msg.get("type") != "error", msg
                continue
            got.append(Received(decode_frame(msg), wall_us(), now))
            await ws.send(encode_control(Ack(got[-1].frame.header.frame_id)))
    return got


@pytest.fixture
def video_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[EmbeddedRedis, Service, Service]]:
    require_services()
    inference_args, edge_args = request.param
    with EmbeddedRedis(maxmemory="128mb") as redis:
        inference = inference_service(redis.url, *SMALL, *inference_args)
        edge = edge_service(redis.url, *EDGE_ARGS, "--log-level", "warning", *edge_args)
        with running(inference, edge, log_dir=tmp_path):
            wait_ready(f"http://127.0.0.1:{service_port(edge)}", edge, inference)
            try:
                yield redis, inference, edge
            finally:
                edge.signal(signal.SIGCONT)


LAG = ((["--tiers", "video=320x180@h264:300k,low=160x90@60", "--keyframe-interval-s", "30"], []),)


@pytest.mark.parametrize("video_stack", LAG, indirect=True, ids=["long-gop"])
async def test_paused_edge_sends_every_picture_with_its_reference(
        video_stack: tuple[EmbeddedRedis, Service, Service]) -> None:
    from framecast.codecs.h264_decoder import H264Decoder

    _, inference, edge = video_stack
    url = f"ws://127.0.0.1:{service_port(edge)}/ws/{C.DEFAULT_STREAM}"
    done = asyncio.Event()
    viewer = asyncio.create_task(watch(url, done, tier="video"))
    deadline = time.monotonic() + scaled(20)
    pauses = [0.3, 0.5, 0.4, 0.5, 0.3, 0.45]
    try:
        await asyncio.sleep(2.0)  # a steady stream first (measurement window, not a readiness wait)
        for pause in pauses:
            edge.signal(signal.SIGSTOP)
            await asyncio.sleep(pause)  # the fault under test: the edge's reader lags by `pause`
            edge.signal(signal.SIGCONT)
            await asyncio.sleep(1.0)  # the 15 fps stream goes on between pauses
            assert time.monotonic() < deadline
    finally:
        edge.signal(signal.SIGCONT)
        done.set()
    got = await asyncio.wait_for(viewer, scaled(10))
    logs = f"--- inference\n{inference.log()[-2000:]}\n--- edge\n{edge.log()[-2000:]}"
    video = [r for r in got if r.frame.header.codec == C.CODEC_H264]
    assert len(video) >= 60, (len(video), len(got), logs)
    check = ChainCheck()
    dec = H264Decoder()
    decoded = 0
    for r in video:
        check.add(r.frame.header.frame_id, r.frame.payload)
        decoded += dec.decode(r.frame.payload, r.frame.header.keyframe) is not None
    keyframes = sum(r.frame.header.keyframe for r in video)
    # the lag was real: after a pause the edge delivered the entries that piled up, several within 50 ms
    bursts = max(sum(1 for b in video if 0 <= b.recv_mono - a.recv_mono < 0.05) for a in video)
    print(f"[video-lag] pictures={check.pictures} broken={len(check.broken)} keyframes={keyframes} "
          f"decode_errors={dec.errors} decoded={decoded} largest_50ms_burst={bursts} pauses={pauses}")
    assert not check.broken, f"{len(check.broken)} of {check.pictures} pictures lack their reference: " \
                             f"{check.broken[:5]}"
    assert dec.errors == 0 and decoded == len(video), (dec.errors, decoded, len(video))
    assert bursts >= 3, f"the pauses never made the reader lag (largest burst {bursts})"

    # a viewer joining this long GOP (one IDR, ~10 s ago) starts at a fresh IDR, not the cached old keyframe
    done = asyncio.Event()
    joiner = asyncio.create_task(watch(url, done, tier="video"))
    await asyncio.sleep(2.5)  # the join and its first frames (measurement window)
    done.set()
    joined = await asyncio.wait_for(joiner, scaled(10))
    ages = [(r.recv_wall_us - r.frame.header.capture_us) / 1e6 for r in joined]
    first_video = next((r for r in joined if r.frame.header.codec == C.CODEC_H264), None)
    print(f"[video-long-gop-join] first frame age {ages[0] if ages else None}; max {max(ages, default=0):.2f}s")
    assert joined and max(ages) <= STALL_AFTER_S, f"a joiner got a frame {max(ages, default=0):.1f}s old"
    assert first_video is not None and first_video.frame.header.keyframe, logs


IDLE = ((["--tiers", "video=320x180@h264:300k,low=160x90@60", "--keyframe-interval-s", "0.01"],
         ["--reader-grace-s", "1"]),)


@pytest.mark.parametrize("video_stack", IDLE, indirect=True, ids=["every-frame-idr"])
async def test_joining_an_idle_video_tier_gets_no_stale_frame(
        video_stack: tuple[EmbeddedRedis, Service, Service]) -> None:
    """Watch the video tier, leave, wait past the reader grace and the stall threshold, join again.

    Every frame of the tier is an IDR here, so the newest entry left in the tier's stream is always a
    keyframe: an edge that starts from it sends a picture captured seconds ago.
    """
    redis, inference, edge = video_stack
    url = f"ws://127.0.0.1:{service_port(edge)}/ws/{C.DEFAULT_STREAM}"
    done = asyncio.Event()
    first = asyncio.create_task(watch(url, done, tier="video"))
    await asyncio.sleep(1.5)  # watch a while (measurement window)
    done.set()
    seen = await asyncio.wait_for(first, scaled(10))
    assert sum(r.frame.header.codec == C.CODEC_H264 for r in seen) >= 5, len(seen)

    # wait until the tier's newest entry is older than the stall threshold (nobody demands it any more)
    client = sync_client(redis.url)
    key = Keys().frames(C.DEFAULT_STREAM, "video")
    deadline = time.monotonic() + scaled(20)
    while True:
        newest = client.xrevrange(key, "+", "-", count=1)
        age_s = (now_us() - decode_header(newest[0][1][C.FRAME_FIELD]).capture_us) / 1e6
        if age_s > STALL_AFTER_S + 1.5:
            break
        assert time.monotonic() < deadline, f"the video tier is still encoded ({age_s:.1f}s old)"
        await asyncio.sleep(0.1)
    client.close()

    done = asyncio.Event()
    second = asyncio.create_task(watch(url, done, tier="video"))
    t0 = time.monotonic()
    await asyncio.sleep(3.0)  # the join and its first frames (measurement window)
    done.set()
    got = await asyncio.wait_for(second, scaled(10))
    ages = [(r.recv_wall_us - r.frame.header.capture_us) / 1e6 for r in got]
    video = [r for r in got if r.frame.header.codec == C.CODEC_H264]
    print(f"[video-idle-join] stored newest age {age_s:.1f}s; first frame age {ages[0] if ages else None}; "
          f"max age {max(ages, default=0):.2f}s over {len(got)} frames ({len(video)} H.264)")
    logs = f"--- inference\n{inference.log()[-2000:]}\n--- edge\n{edge.log()[-2000:]}"
    assert got, logs
    stale = [(r.frame.header.frame_id, r.frame.header.codec, round(a, 2)) for r, a in zip(got, ages, strict=True)
             if a > STALL_AFTER_S]
    assert not stale, f"frames older than the stall threshold went to a joining viewer: {stale[:5]}"
    assert len(video) >= 5 and video[0].recv_mono - t0 < scaled(2.5), (len(video), logs)
