"""The page's H.264 path (WebCodecs via static/video.js) in real Chromium.

The real edge has no video tiers yet, so the stand-in edge of the client unit tests serves the
page and real H.264 access units from framecast.video's encoder (PyAV/libx264); this checks the
page's side of issue 10: codec negotiation, in-order decoding, drawing and acks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

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
