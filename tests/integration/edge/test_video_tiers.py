"""H.264 tiers through the edge: in order from a keyframe, for viewers that offer h264; JPEG for the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from framecast import constants as C
from framecast.bus import BusPublisher, Keys, StreamInfo, now_us, sync_client
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import FrameHeader, TierInfo, decode_frame, encode_frame
from tests.support.procs import EdgeProcess
from tests.support.publisher import make_jpegs
from tests.support.viewer import ViewerClient

from ..video.h264_check import video_message

av = pytest.importorskip("av")


class VideoPublisher:
    """30 fps: tier 0 H.264 640x360 (libx264, IDR every second), tier 1 JPEG 320x180."""

    def __init__(self, url: str, stream: str = "vid") -> None:
        from framecast.codecs.h264_encoder import VideoTierEncoder
        from framecast.ladder import parse_video_tier

        self.stream = stream
        self.client = sync_client(url)
        self.pub = BusPublisher(self.client, stream, keys=Keys(), maxlen=64)
        self.venc = VideoTierEncoder(parse_video_tier("video=640x360@h264:800k"), tier_index=0, fps=30,
                                     keyframe_interval_s=1.0, input_format="bgr24", threads=1)
        self.jpeg = make_jpegs(320, 180, 60, n=1)[0]
        self.stop_event = threading.Event()
        self.frame_id = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _image(self, i: int) -> Any:
        img = np.zeros((360, 640, 3), np.uint8)
        img[:, :, 1] = 60
        x = (i * 8) % 600
        img[100:260, x:x + 40] = (255, 255, 255)
        return img

    def _run(self) -> None:
        next_t = time.monotonic()
        last_meta = 0.0
        while not self.stop_event.is_set():
            self.frame_id += 1
            cap = now_us()
            out = self.venc.encode(self._image(self.frame_id))
            msgs = {"video": video_message(self.venc, out, frame_id=self.frame_id, capture_us=cap, publish_us=now_us()),
                    "low": encode_frame(FrameHeader(frame_id=self.frame_id, capture_us=cap, width=320, height=180,
                                                    tier=1, quality=60, flags=C.FLAG_KEYFRAME), self.jpeg)}
            self.pub.publish(msgs, cap)
            if time.monotonic() - last_meta > 1.0:
                tiers = (self.venc.describe(640, 360),
                         TierInfo(name="low", width=320, height=180, quality=60, codec="jpeg"))
                self.pub.heartbeat(StreamInfo(stream=self.stream, tiers=tiers, fps=30.0))
                last_meta = time.monotonic()
            next_t += 1 / 30
            self.stop_event.wait(max(0.0, next_t - time.monotonic()))

    def start(self) -> VideoPublisher:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.venc.close()
        self.client.close()


@pytest.fixture(scope="module")
def video_stream(redis_server: EmbeddedRedis) -> Iterator[VideoPublisher]:
    pub = VideoPublisher(redis_server.url).start()
    deadline = time.monotonic() + 10
    while not pub.client.exists(Keys().meta("vid")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield pub
    pub.stop()


async def test_h264_viewer_gets_an_unbroken_chain_from_a_keyframe(edge: EdgeProcess,
                                                                  video_stream: VideoPublisher) -> None:
    from framecast.codecs.h264_decoder import H264Decoder

    raw: list[bytes] = []
    v = await ViewerClient(edge.ws("vid"), hello={"codecs": ["h264", "jpeg"]}, raw=raw).run(4.0)
    print("controls:", [c for c in v.controls if c["type"] != "hello"])
    assert v.server_hello is not None and v.server_hello["tier"] == "video", v.server_hello
    assert v.server_hello["tiers"][0]["codec"].startswith("avc1.")
    frames = [decode_frame(b) for b in raw]
    # no keyframe was cached when it joined: at most one JPEG still comes first, then only video
    stills = [f for f in frames if f.header.codec == C.CODEC_JPEG]
    assert len(stills) <= 1 and (not stills or frames[0] is stills[0]), [f.header.codec for f in frames[:5]]
    frames = frames[len(stills):]
    assert len(frames) >= 60, len(frames)
    assert all(f.header.codec == C.CODEC_H264 for f in frames)
    assert frames[0].header.keyframe, "the chain starts at a keyframe"
    ids = [f.header.frame_id for f in frames]
    gaps = [(a, b) for a, b, f in zip(ids, ids[1:], frames[1:], strict=False) if b != a + 1 and not f.header.keyframe]
    assert not gaps, f"a P-frame followed a gap: {gaps[:5]}"
    dec = H264Decoder()
    pictures = sum(dec.decode(f.payload, f.header.keyframe) is not None for f in frames)
    assert dec.errors == 0 and pictures >= 0.9 * len(frames), (dec.errors, pictures, len(frames))


async def test_viewer_without_h264_gets_jpeg_from_the_same_stream(edge: EdgeProcess,
                                                                  video_stream: VideoPublisher) -> None:
    v = await ViewerClient(edge.ws("vid")).run(2.0, until_frames=20)  # no hello at all: a legacy client
    assert v.server_hello is not None and v.server_hello["tier"] == "low"
    assert len(v.frames) == 20 and {f[2] for f in v.frames} == {1}
    j = await ViewerClient(edge.ws("vid"), hello={"codecs": ["jpeg"]}).run(2.0, until_frames=20)
    assert j.server_hello is not None and j.server_hello["tier"] == "low" and {f[2] for f in j.frames} == {1}
