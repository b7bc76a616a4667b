"""Real headless Chromium decodes framecast H.264 access units with video.js (WebCodecs).

The page is served from 127.0.0.1 (a secure context, as WebCodecs requires) by a stdlib HTTP server;
frames come from the real encoder and are pushed into `FramecastVideo.VideoPipe` as the viewer would
push WebSocket messages. Checks: every frame of a stream drawn and the canvas moving, a join mid-GOP
skipped (and acked) until the keyframe, a corrupt chunk recovered through a keyframe request.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from framecast.codecs.h264_encoder import EncodedVideoFrame, H264Encoder
from tests.support.browser import headless_chromium, open_page
from tests.support.httpserve import serving

from .conftest import Image

pytestmark = pytest.mark.browser

VIDEO_JS = Path(__file__).resolve().parents[3] / "src" / "framecast" / "edge" / "static" / "video.js"
PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><script src="/video.js"></script></head>
<body><canvas id="c" width="16" height="16"></canvas></body></html>"""

RUN = """async ({codec, width, height, frames, pushGapMs}) => {
  const canvas = document.getElementById("c");
  const log = {drawn: [], skipped: [], keyRequests: [], errors: [], means: {}};
  const pipe = new FramecastVideo.VideoPipe(canvas, {
    onDrawn: (id) => {
      log.drawn.push(id);
      const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      let sum = 0;
      for (let i = 0; i < px.length; i += 4) sum += px[i] + px[i + 1] + px[i + 2];
      log.means[id] = sum / (px.length / 4 * 3);
    },
    onSkipped: (id) => log.skipped.push(id),
    onKeyframeNeeded: (reason) => log.keyRequests.push(reason),
    onError: (e) => log.errors.push(String(e)),
  });
  pipe.configure({codec, width, height});
  for (const f of frames) {
    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
    pipe.push({frameId: f.id, captureUs: 0, flags: f.key ? 1 : 0}, bytes);
    await new Promise((r) => setTimeout(r, pushGapMs));
  }
  const deadline = performance.now() + 5000;
  while (log.drawn.length + log.skipped.length < frames.length && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  log.stats = pipe.stats;
  log.canvas = [canvas.width, canvas.height];
  pipe.close();
  return log;
}"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body, kind = (VIDEO_JS.read_bytes(), "text/javascript") if self.path == "/video.js" else (PAGE, "text/html")
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    with serving(_Handler) as server:
        yield f"http://127.0.0.1:{server.server_port}/"


@pytest.fixture(scope="module")
def browser_page(page_url: str) -> Iterator[Any]:
    """The page in headless Chromium, whatever its H.264 support."""
    with headless_chromium() as browser:
        pg, errors = open_page(browser, page_url)
        yield pg
        assert errors == []


@pytest.fixture(scope="module")
def page(browser_page: Any) -> Any:
    """The page where this Chromium decodes H.264 (the codec test below asserts that it does)."""
    if not browser_page.evaluate("FramecastVideo.supported('avc1.42C01E')"):
        pytest.skip("this Chromium has no H.264 WebCodecs decoder")
    return browser_page


def stream(frames: list[Image], keyframe_interval_s: float) -> tuple[H264Encoder, list[EncodedVideoFrame]]:
    enc = H264Encoder(320, 180, bitrate=400_000, keyframe_interval_s=keyframe_interval_s, input_format="bgr24")
    return enc, [enc.encode(img, now=i / 30) for i, img in enumerate(frames)]


def as_js(out: list[EncodedVideoFrame], first_id: int = 0) -> list[dict[str, Any]]:
    return [{"id": first_id + i, "key": f.keyframe, "b64": base64.b64encode(f.data).decode()}
            for i, f in enumerate(out)]


def run(page: Any, enc: H264Encoder, frames: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(RUN, {"codec": enc.codec_string, "width": enc.width,
                                                 "height": enc.height, "frames": frames, "pushGapMs": 5})
    return result


def test_codec_string_of_the_encoder_is_supported(browser_page: Any) -> None:
    # not behind the H.264 skip of `page`: this is the test that says whether the browser decodes the encoder's stream
    for width, height, bitrate in ((1280, 720, 2_500_000), (640, 360, 800_000)):
        enc = H264Encoder(width, height, bitrate=bitrate)
        assert browser_page.evaluate(f"FramecastVideo.supported('{enc.codec_string}')"), enc.codec_string


def test_every_frame_is_decoded_and_drawn(page: Any, small_frames: list[Image]) -> None:
    enc, out = stream(small_frames[:45], keyframe_interval_s=1.0)
    log = run(page, enc, as_js(out))
    assert log["errors"] == [] and log["skipped"] == []
    assert log["drawn"] == list(range(45))
    assert log["canvas"] == [320, 180]
    means = [log["means"][str(i)] for i in (0, 20, 44)]
    assert all(30 < m < 225 for m in means), means  # a picture, not black or white
    assert len({round(m, 1) for m in means}) == 3, means  # the picture moves


def test_join_mid_gop_skips_and_acks_until_the_keyframe(page: Any, small_frames: list[Image]) -> None:
    enc, out = stream(small_frames[:45], keyframe_interval_s=1.0)  # keyframes at 0 and 30
    log = run(page, enc, as_js(out[5:], first_id=5))
    assert log["skipped"] == list(range(5, 30))  # acked at once: the edge's window keeps moving
    assert log["drawn"] == list(range(30, 45))
    assert log["errors"] == []
    assert 1 <= len(log["keyRequests"]) <= 2  # asked for a keyframe, rate-limited to one per second


def test_a_corrupt_chunk_recovers_through_a_keyframe(page: Any, small_frames: list[Image]) -> None:
    enc, out = stream(small_frames[:45], keyframe_interval_s=1.0)
    frames = as_js(out)
    corrupt = base64.b64encode(b"\x00\x00\x00\x01\x65" + os.urandom(2000)).decode()  # an IDR slice of noise
    frames[10] = {"id": 10, "key": True, "b64": corrupt}
    log = run(page, enc, frames)
    assert log["drawn"] == [*range(10), *range(30, 45)]  # frozen from the error, back at the next keyframe
    assert log["stats"]["errors"] == 1 and log["errors"][0].startswith("EncodingError")
    assert log["keyRequests"] == ["decoder error"]  # the viewer asks the edge for a keyframe
    assert log["skipped"] == list(range(11, 30))  # deltas after the error are acked, not decoded
