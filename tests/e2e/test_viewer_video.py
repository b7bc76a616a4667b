"""The page's H.264 path (WebCodecs via static/video.js) in real Chromium.

Two kinds of edge: the real stack (Valkey, inference and edge processes on the default ladder,
whose best tier is H.264), where a person opening the page gets the video tier, a late joiner gets
a picture within a keyframe interval, and a viewer forced to drop frames recovers through a
keyframe; and the stand-in edge of the client unit tests, which serves real H.264 access units from
framecast.codecs' H.264 encoder (PyAV/libx264) in scripted ways: codec negotiation, in-order decoding,
drawing, acks, a join mid-GOP.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.client.stack import Stack
from tests.support.timing import scaled
from tests.unit.client.conftest import edge_in_thread
from tests.unit.client.framecast_fake_edge import VIDEO_SIZE, FakeEdge, Plan, video_tiers

from .test_viewer_page import CANVAS_PROBE, stats, wait_stats

pytestmark = pytest.mark.browser
pytest.importorskip("av", reason="PyAV is not installed (pip install 'framecast[video]')")


@pytest.fixture
def video_edge() -> Iterator[FakeEdge]:
    with edge_in_thread(FakeEdge(tiers=video_tiers(), fps=30)) as edge:
        yield edge


def test_page_decodes_h264_with_webcodecs(video_edge: FakeEdge, page: Any) -> None:
    page.goto(video_edge.url + "/")
    s = wait_stats(page, "s.framesDrawn >= 10", 30)
    if not s["videoSupported"]:
        pytest.skip("this Chromium has no H.264 WebCodecs decoder")
    assert video_edge.hellos[0]["codecs"] == ["h264", "jpeg"]
    assert s["codec"] == "h264" and s["tier"] == "video" and (s["width"], s["height"]) == VIDEO_SIZE
    assert s["video"]["keyframes"] >= 1 and s["video"]["errors"] == 0 and s["decodeErrors"] == 0
    first = page.evaluate(CANVAS_PROBE)
    wait_stats(page, f"s.framesDrawn >= {s['framesDrawn'] + 10}", 20)
    second = page.evaluate(CANVAS_PROBE)
    assert first["std"] > 5 and second["hash"] != first["hash"]
    assert len(video_edge.acks) >= 15 and "H.264" in page.inner_text("#overlay")
    assert page.page_errors == []


def test_page_can_stay_on_jpeg(video_edge: FakeEdge, page: Any) -> None:
    page.goto(video_edge.url + "/?codecs=jpeg")
    s = wait_stats(page, "s.framesDrawn >= 5", 30)
    assert video_edge.hellos[0]["codecs"] == ["jpeg"] and video_edge.video_messages == 0
    assert s["codec"] == "jpeg" and s["tier"] == "high" and stats(page)["video"] is None


def test_page_joining_mid_gop_asks_for_a_keyframe(page: Any) -> None:
    with edge_in_thread(FakeEdge(tiers=video_tiers(), fps=30, plans=[Plan(video_start_delta=3)])) as edge:
        page.goto(edge.url + "/")
        s = wait_stats(page, "s.framesDrawn >= 5", 30)
        if not s["videoSupported"]:
            pytest.skip("this Chromium has no H.264 WebCodecs decoder")
        assert s["codec"] == "h264" and s["skipped"] >= 3 and s["video"]["errors"] == 0
        assert edge.keyframe_requests and edge.keyframe_requests[0]["reason"]
        assert len(edge.acks) >= 5  # skipped deltas are acked too, so the edge's window never sticks


# --- the real stack, default ladder ----------------------------------------------------------
KEYFRAME_INTERVAL_S = 2.0  # the inference service's default IDR interval


def labelled(base: str, name: str, **labels: str) -> float:
    """One labelled sample of a service's /metrics (0 when absent)."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? ([0-9.eE+-]+)$", line)
        if m and want <= set((m.group(1) or "").split(",")) - {""}:
            return float(m.group(2))
    return 0.0


def live_video(page: Any, url: str) -> dict[str, Any]:
    page.goto(url)
    s = wait_stats(page, "s.framesDrawn >= 1 && (s.codec === 'h264' || !s.videoSupported)", 30)
    if not s["videoSupported"]:
        pytest.skip("this Chromium has no H.264 WebCodecs decoder")
    return wait_stats(page, "s.codec === 'h264' && s.framesDrawn >= 10", 30)


def test_a_person_gets_the_video_tier_by_default(stack: Stack, page: Any) -> None:
    s = live_video(page, stack.url + "/")
    assert s["tier"] == "video-high" and (s["width"], s["height"]) == (1280, 720)
    assert s["video"]["errors"] == 0 and s["decodeErrors"] == 0 and s["video"]["keyframes"] >= 1
    first = page.evaluate(CANVAS_PROBE)
    s = wait_stats(page, f"s.codec === 'h264' && s.framesDrawn >= {s['framesDrawn'] + 10} && s.fps > 10", 40)
    second = page.evaluate(CANVAS_PROBE)
    assert first["std"] > 5 and second["hash"] != first["hash"]
    # the overlay a person reads: codec, FPS, latency and kbit/s
    overlay = page.inner_text("#overlay")
    assert "H.264 avc1." in overlay and "fps" in overlay and "latency" in overlay and "kbit/s" in overlay
    assert s["latencyP50Ms"] > 0 and 100 < s["kbps"] < 10_000  # ~2.5 Mbit/s of H.264, not ~28 of JPEG q85
    assert "video-high" in page.inner_text("#tier")  # the tier menu lists the video tiers
    assert page.page_errors == []


def test_a_late_joiner_has_a_picture_at_once_and_video_within_a_keyframe_interval(
        stack: Stack, browser: Any, page: Any) -> None:
    live_video(page, stack.url + "/")  # a first viewer: the video tier is being encoded
    late = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    try:
        t0 = time.monotonic()
        late.goto(stack.url + "/")
        late.wait_for_function("() => window.framecastStats && window.framecastStats.codec === 'h264'",
                               timeout=scaled(10) * 1000)
        to_video_s = time.monotonic() - t0  # page load, hello and the first decoded H.264 picture
        s = stats(late)
        print(f"late joiner: first picture {s['firstFrameMs']} ms after connecting, H.264 drawn "
              f"{to_video_s * 1000:.0f} ms after page load started")
        assert s["firstFrameMs"] is not None and s["firstFrameMs"] < scaled(1000)
        assert to_video_s < scaled(KEYFRAME_INTERVAL_S), f"video after {to_video_s:.2f} s"
        assert s["video"]["errors"] == 0 and s["decodeErrors"] == 0
    finally:
        late.context.close()


def test_forced_drops_recover_through_a_keyframe(stack: Stack, page: Any) -> None:
    # pinned: in auto a viewer that stops acking also moves down the ladder, and this is about the keyframe
    s = live_video(page, stack.url + "/?tier=video-high")
    behind = labelled(stack.url, "framecast_edge_frames_dropped_total", reason="behind")
    requests = labelled(stack.url, "framecast_edge_keyframe_requests_total")
    # the page stops reading for 1.5 s: the edge's window fills, queued P-frames age past its limit,
    # it drops them, waits for a keyframe and asks the encoder for one
    page.evaluate("() => { const t = performance.now(); while (performance.now() - t < 1500) {} }")
    s = wait_stats(page, f"s.framesDrawn >= {s['framesDrawn'] + 30}", 30)
    assert s["codec"] == "h264" and s["tier"] == "video-high"
    assert s["video"]["errors"] == 0 and s["decodeErrors"] == 0
    assert s["dropped"] > 0  # the id gap the edge skipped, at a keyframe
    assert labelled(stack.url, "framecast_edge_frames_dropped_total", reason="behind") > behind
    assert labelled(stack.url, "framecast_edge_keyframe_requests_total") > requests
    before = page.evaluate(CANVAS_PROBE)
    wait_stats(page, f"s.framesDrawn >= {s['framesDrawn'] + 10}", 20)
    assert page.evaluate(CANVAS_PROBE)["hash"] != before["hash"]  # moving again, not a frozen picture
