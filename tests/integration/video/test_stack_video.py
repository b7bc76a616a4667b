"""H.264 tiers through the real stack: Valkey + `python -m framecast.inference` + `python -m framecast.edge`.

A raw websockets viewer offering h264 gets the video tier from a keyframe, every frame decodes
with PyAV, frame ids grow; a `{"type":"keyframe"}` control message yields an IDR promptly (the
interval is set far longer than the wait, so the IDR can only be the requested one).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from framecast import constants as C
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import Ack, ClientHello, Frame, KeyframeNeeded, decode_frame, encode_control
from tests.integration.client.stack import EDGE_ARGS, require_services, wait_ready
from tests.integration.video.h264_check import ChainCheck
from tests.support.procs import edge_service, inference_service, running, service_port
from tests.support.timing import scaled
from tests.support.viewer import messages, open_viewer

pytest.importorskip("av")

LADDER = "video=640x360@h264:800k,low=320x180@60"
KEYFRAME_INTERVAL_S = 30.0  # no interval IDR during the test: every later IDR was asked for


def inference_metric(svc_args: list[str], name: str, **labels: str) -> float:
    port = svc_args[svc_args.index("--metrics-port") + 1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}\{{([^}}]*)\}} ([0-9.eE+-]+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


async def watch(url: str, seconds: float, *, keyframe_after: float | None = None
                ) -> tuple[dict[str, Any], list[tuple[float, Frame]], float | None]:
    """Frames (arrival time, frame) for `seconds`; with `keyframe_after`, send a keyframe request then."""
    frames: list[tuple[float, Frame]] = []
    hello: dict[str, Any] = {}
    sent_at: float | None = None
    deadline = time.monotonic() + scaled(seconds)
    async with open_viewer(url) as ws:
        await ws.send(encode_control(ClientHello(codecs=("h264", "jpeg"))))
        start = time.monotonic()
        async for now, msg in messages(ws, deadline, poll=0.2):
            if keyframe_after is not None and sent_at is None and now - start >= keyframe_after:
                await ws.send(encode_control(KeyframeNeeded("test")))
                sent_at = time.monotonic()
            if isinstance(msg, dict):
                if msg.get("type") == "hello" and not hello:
                    hello = msg
                continue
            frame = decode_frame(msg)
            frames.append((now, frame))
            await ws.send(encode_control(Ack(frame.header.frame_id)))
    return hello, frames, sent_at


def test_inference_h264_tier_through_the_edge(tmp_path: Path) -> None:
    from framecast.codecs.h264_decoder import H264Decoder

    require_services()
    with EmbeddedRedis(maxmemory="128mb") as redis:
        inference = inference_service(redis.url, "--width", "640", "--height", "360", "--fps", "30",
                                      "--tiers", LADDER, "--keyframe-interval-s", str(KEYFRAME_INTERVAL_S),
                                      "--video-encoder", "libx264")
        edge = edge_service(redis.url, *EDGE_ARGS)
        with running(inference, edge, log_dir=tmp_path):
            base = f"http://127.0.0.1:{service_port(edge)}"
            wait_ready(base, edge, inference)
            url = f"ws://127.0.0.1:{service_port(edge)}/ws/{C.DEFAULT_STREAM}"
            hello, frames, sent_at = asyncio.run(watch(url, 6.0, keyframe_after=3.0))
            logs = f"--- inference\n{inference.log()[-3000:]}\n--- edge\n{edge.log()[-3000:]}"

            assert hello.get("tier") == "video", (hello, logs)
            assert hello["tiers"][0]["codec"].startswith("avc1."), hello
            assert hello["tiers"][1]["codec"] == "jpeg", hello
            video = [(t, f) for t, f in frames if f.header.codec == C.CODEC_H264]
            assert len(video) >= 45, (len(video), len(frames), logs)
            first = video[0][1].header
            assert first.keyframe and first.quality == 0 and first.tier == 0, first
            ids = [f.header.frame_id for _, f in video]
            assert ids == sorted(set(ids)), "frame ids only grow"
            # every picture has its reference, checked in the bitstream (frame ids also skip where the
            # source dropped frames before encoding, which leaves the encoder's chain intact)
            chain = ChainCheck()
            for _, f in video:
                chain.add(f.header.frame_id, f.payload)
            assert not chain.broken, f"pictures without their reference: {chain.broken[:5]}"
            dec = H264Decoder()
            pictures = sum(dec.decode(f.payload, f.header.keyframe) is not None for _, f in video)
            assert dec.errors == 0 and pictures >= len(video) - 2, (dec.errors, pictures, len(video))

            # the requested IDR: the first keyframe after the request, within about a second
            assert sent_at is not None
            later = [t for t, f in video if t > sent_at and f.header.keyframe]
            assert later, f"no keyframe after the request\n{logs}"
            assert later[0] - sent_at < scaled(1.5), later[0] - sent_at
            requested = inference_metric(inference.args, "framecast_inference_video_keyframes_total",
                                         tier="video", reason="requested")
            assert requested >= 1, logs


def test_ladder_mixes_video_and_jpeg_tiers() -> None:
    from framecast.ladder import DEFAULT_LADDER, Tier, VideoTier, parse_ladder

    text = "high=1280x720@85,video=1280x720@h264:2500k,low=640x360@60"
    ladder = parse_ladder(text)
    assert [type(t) for t in ladder] == [Tier, VideoTier, Tier]
    assert [t.name for t in ladder] == ["high", "video", "low"]  # ladder positions: the header's tier index
    # the default: video tiers first, then JPEG
    assert [type(t) for t in parse_ladder(DEFAULT_LADDER)] == [VideoTier, VideoTier, Tier, Tier, Tier]
    with pytest.raises(ValueError, match="appears twice"):
        parse_ladder("high=1280x720@85,high=640x360@h264:600k")


def test_tier_encoder_starts_video_at_an_idr_and_heals_lost_frames() -> None:
    import numpy as np

    from framecast.codecs.jpeg import make_encoder
    from framecast.inference.encode import TierEncoder, VideoOptions
    from framecast.ladder import parse_ladder

    clock = [100.0]
    te = TierEncoder(make_encoder("simplejpeg"), parse_ladder(LADDER), 640, 360,
                     video=VideoOptions(keyframe_interval_s=60, keyframe_min_gap_s=0.0, encoder="libx264"),
                     clock=lambda: clock[0])
    try:
        assert te.describe(0).codec.startswith("avc1.") and te.describe(1).codec == "jpeg"
        rng = np.random.default_rng(1)
        img = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
        keys = []
        for i in range(8):
            clock[0] += 1 / 30
            if i == 4:  # tier 0 not demanded for one frame (< resume_after_s): demand restarts at an IDR
                assert [t.index for t in te.encode(img, [1])] == [1]
                continue
            video, jpeg = te.encode(img, [0, 1])
            assert video.codec == C.CODEC_H264 and video.quality == 0 and jpeg.codec == C.CODEC_JPEG
            assert jpeg.flags == C.FLAG_KEYFRAME and jpeg.quality == 60
            keys.append(bool(video.flags & C.FLAG_KEYFRAME))
            if i == 6:
                te.lost([video])  # encoded, never published: the next frame must be an IDR
        assert keys == [True, False, False, False, True, False, True], keys
    finally:
        te.close()
