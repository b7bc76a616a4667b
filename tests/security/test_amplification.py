"""Load from nothing: tier pins that make the inference service encode every tier, keyframe-request floods
that force IDRs on every H.264 viewer. (Snapshot floods: test_access.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
import redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from framecast.bus import Keys
from framecast.protocol import Ack, ClientHello, KeyframeNeeded, decode_header, encode_control
from tests.reliability.conftest import Stack, stack_running
from tests.reliability.support import STREAM_ARGS, Viewer, http_text, stop_viewers
from tests.security.support import attacker_address, watch_attack
from tests.support.metrics import metric
from tests.support.timing import scaled, wait_until_async
from tests.support.viewer import open_viewer

JPEG_LADDER = "high=320x180@80,mid=256x144@70,low=160x90@60,tiny=96x54@50"
VIDEO_LADDER = "video=320x180@h264:300k,low=160x90@60"


def _tiers_args(ladder: str) -> list[str]:
    args = list(STREAM_ARGS)
    args[args.index("--tiers") + 1] = ladder
    return args


@pytest.fixture(scope="module")
def jpeg_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_running(tmp_path_factory.mktemp("security-pins"), inference_args=_tiers_args(JPEG_LADDER)) as s:
        yield s


def _demanded(stack: Stack, tiers: list[str]) -> set[str]:
    client = redis.Redis.from_url(stack.redis.url)
    try:
        keys = Keys("framecast:")
        return {t for t in tiers if client.exists(keys.demand("demo", t))}
    finally:
        client.close()


async def test_tier_pins_from_one_address_are_capped(jpeg_stack: Stack) -> None:
    stack = jpeg_stack
    tiers = [t.split("=")[0] for t in JPEG_LADDER.split(",")]
    pinners = [Viewer(stack.ws(), hello=ClientHello(tier=t, max_fps=1.0), local_host=attacker_address())
               for t in [*tiers, tiers[0]]]
    seen: list[set[str]] = []

    async def attack() -> None:
        for v in pinners:
            v.start()
        await wait_until_async("the pinners' first frames", lambda: all(v.frames or v.closed for v in pinners), 20)
        t0 = time.monotonic()
        while time.monotonic() - t0 < scaled(4):  # demand keys refresh every second: sample them for 4 s
            seen.append(await asyncio.to_thread(_demanded, stack, tiers))
            await asyncio.sleep(0.5)
        await stop_viewers(pinners)

    _, figures = await watch_attack(stack, "tier_pins", attack)
    most = max(seen, key=len)
    refused = sum(1 for v in pinners for _, c in v.controls
                  if c.get("type") == "error" and "pin" in c.get("message", ""))
    figures.extra.update(demanded_tiers_at_most=sorted(most), pins_refused=refused)
    figures.record()
    assert not any(v.close_code for v in pinners), "a refused pin is not a reason to close"
    # the honest viewers' tier (auto) + at most pinned_tiers_per_ip (2) from the attacker's address
    assert len(most) <= 3, f"tiers demanded during the attack: {most}"
    assert refused >= 2


@pytest.fixture(scope="module")
def video_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_running(tmp_path_factory.mktemp("security-keyframes"), inference_args=_tiers_args(VIDEO_LADDER),
                       hello=ClientHello(codecs=("h264", "jpeg"))) as s:
        yield s


def _requested_idrs(stack: Stack) -> float:
    assert stack.inference is not None
    port = stack.inference.args[stack.inference.args.index("--metrics-port") + 1]
    return metric(http_text(f"http://127.0.0.1:{port}/metrics"), "framecast_inference_video_keyframes_total",
                  reason="requested")


async def _keyframe_flooder(url: str, source: str, per_s: float, seconds: float) -> int:
    sent = 0
    with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
        async with open_viewer(url, local_host=source, max_size=1 << 24, ping_interval=None) as ws:
            await ws.send(encode_control(ClientHello(codecs=("h264", "jpeg"))))
            reader = asyncio.create_task(_drain(ws))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await ws.send(encode_control(KeyframeNeeded("flood")))
                sent += 1
                await asyncio.sleep(1 / per_s)
            reader.cancel()
    return sent


async def _drain(ws: ClientConnection) -> None:
    """Read and ack every frame: the flooder looks like a healthy H.264 viewer, so it keeps its video tier."""
    with contextlib.suppress(ConnectionClosed):
        async for msg in ws:
            if isinstance(msg, bytes):
                await ws.send(encode_control(Ack(decode_header(msg).frame_id)))


async def test_keyframe_request_flood_is_bounded_per_stream(video_stack: Stack) -> None:
    stack = video_stack
    seconds = 6.0
    counts: dict[str, float] = {}

    async def attack() -> int:
        counts["before"] = await asyncio.to_thread(_requested_idrs, stack)
        sent = sum(await asyncio.gather(*(_keyframe_flooder(stack.ws(), attacker_address(i % 3), 15, seconds)
                                          for i in range(10))))
        counts["after"] = await asyncio.to_thread(_requested_idrs, stack)
        return sent

    sent, figures = await watch_attack(stack, "keyframe_flood", attack,
                                       viewer_kwargs={"hello": ClientHello(codecs=("h264", "jpeg"))})
    forced = counts["after"] - counts["before"]
    figures.extra.update(requests_sent=sent, idrs_requested=forced)
    figures.record()
    assert sent >= 300, sent
    # one request per stream tier per keyframe_interval_s (1 s), whoever asks
    assert forced <= seconds / 1.0 + 1, f"{sent} keyframe requests forced {forced} IDRs in {seconds:.0f}s"
