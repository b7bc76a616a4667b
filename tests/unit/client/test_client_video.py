"""H.264 tiers in the Python client: codec negotiation, in-order decoding with PyAV, JPEG fallback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from framecast import constants as C
from framecast.cli import main
from framecast.client import ClientError, connect
from tests.support.timing import scaled
from tests.unit.client.conftest import edge_in_thread
from tests.unit.client.framecast_fake_edge import VIDEO_SIZE, FakeEdge, Plan, video_tiers

pytest.importorskip("av", reason="PyAV is not installed (pip install 'framecast[video]')")


async def test_video_tier_decodes_in_order() -> None:
    async with FakeEdge(tiers=video_tiers(), fps=60) as edge, \
            connect(edge.url, codecs=("h264", "jpeg"), decode_video=True) as sub:
        frames = []
        async with asyncio.timeout(scaled(20)):
            async for frame in sub:
                frames.append(frame)
                if len(frames) == 20:
                    break
    assert edge.hellos[0]["codecs"] == ["h264", "jpeg"]
    assert all(f.header.codec == C.CODEC_H264 and f.codec == "h264" and f.tier_name == "video" for f in frames)
    assert frames[0].keyframe  # a viewer starts at a keyframe
    assert not all(f.keyframe for f in frames)  # and then gets delta frames
    for f in frames:
        image = f.image()
        assert image.shape == (VIDEO_SIZE[1], VIDEO_SIZE[0], 3)
    # the picture moves: a bright bar walks to the right
    assert (frames[0].image() != frames[10].image()).any()
    bgr, rgb = frames[5].image(rgb=False), frames[5].image()
    assert (bgr[:, :, ::-1] == rgb).all()


async def test_jpeg_only_viewer_gets_jpeg_from_a_video_ladder() -> None:
    async with FakeEdge(tiers=video_tiers()) as edge, connect(edge.url) as sub:
        frame = await asyncio.wait_for(sub.next(), scaled(10))
    assert frame is not None and frame.codec == "jpeg" and frame.tier_name == "high"
    assert edge.hellos[0]["codecs"] == ["jpeg"] and edge.video_messages == 0


async def test_video_without_decoding_still_measures() -> None:
    async with FakeEdge(tiers=video_tiers(), fps=60) as edge, connect(edge.url, codecs=["h264", "jpeg"]) as sub:
        frame = await asyncio.wait_for(sub.next(), scaled(10))
        assert frame is not None and frame.codec == "h264" and frame.latency_ms >= 0
        with pytest.raises(ClientError, match="decode_video=True"):
            frame.image()


def test_codec_arguments() -> None:
    with pytest.raises(ClientError, match="invalid codecs"):
        connect("http://x", codecs=("vp9",))
    with pytest.raises(ClientError, match="needs 'h264'"):
        connect("http://x", decode_video=True)


def test_cli_watch_video_tier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with edge_in_thread(FakeEdge(tiers=video_tiers(), fps=60)) as edge:
        rc = main(["watch", edge.url, "--codecs", "h264,jpeg", "--frames", "10", "--json", "--save", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["codec"] == "h264" and summary["codecs"] == ["h264", "jpeg"] and summary["frames"] == 10
    stream = (tmp_path / "demo-video.h264").read_bytes()
    assert stream.startswith(b"\x00\x00\x00\x01") and summary["saved"] == 10


def test_cli_rejects_unknown_codecs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "http://127.0.0.1:1", "--codecs", "vp9"]) == 1
    assert "invalid codecs" in capsys.readouterr().err


async def test_joining_mid_gop_asks_for_a_keyframe_and_recovers() -> None:
    async with FakeEdge(tiers=video_tiers(), fps=60, plans=[Plan(video_start_delta=3)]) as edge, \
            connect(edge.url, codecs=("h264", "jpeg"), decode_video=True) as sub:
        frames = []
        async with asyncio.timeout(scaled(20)):
            async for frame in sub:
                frames.append(frame)
                if frame.decoded is not None and len(frames) >= 6:
                    break
    assert [f.decoded is None for f in frames[:3]] == [True, True, True]  # deltas without their reference
    assert frames[3].keyframe and frames[3].decoded is not None
    assert sub.keyframe_requests == 1 and edge.keyframe_requests[0]["type"] == "keyframe"
