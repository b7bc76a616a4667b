"""The viewer page in real headless Chromium against a real edge, Valkey and inference service.

Checks what a person sees: frames drawn (canvas not blank, changing), the overlay's FPS above
10 on loopback, acks reaching the edge (its glass-to-glass histogram counts them), tier
selection, reconnect after an edge restart, and a clear message for an unknown stream.
A screenshot goes to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from framecast.protocol import decode_frame
from tests.integration.client.stack import GLASS_TO_GLASS_METRIC, Stack
from tests.support.metrics import metric, scrape
from tests.support.procs import REPO
from tests.support.timing import scaled, wait_until

pytestmark = pytest.mark.browser
ARTIFACTS = REPO / "tests" / "artifacts"

CANVAS_PROBE = """() => {
  const c = document.getElementById("view");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sumsq = 0, n = 0, hash = 0;
  for (let i = 0; i < d.length; i += 4 * 101) {
    const v = d[i] + d[i + 1] + d[i + 2];
    sum += v; sumsq += v * v; n += 1;
    hash = (hash * 31 + d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7) | 0;
  }
  const mean = sum / n;
  return { width: c.width, height: c.height, mean, std: Math.sqrt(Math.max(0, sumsq / n - mean * mean)), hash };
}"""


def stats(page: Any) -> dict[str, Any]:
    return page.evaluate("window.framecastStats")  # type: ignore[no-any-return]


def wait_stats(page: Any, condition: str, seconds: float) -> dict[str, Any]:
    page.wait_for_function(f"() => {{ const s = window.framecastStats; return s && ({condition}); }}",
                           timeout=scaled(seconds) * 1000)
    return stats(page)


def test_page_shows_live_frames_with_stats(stack: Stack, page: Any) -> None:
    acked_before = metric(scrape(stack.url), GLASS_TO_GLASS_METRIC + "_count")
    page.goto(stack.url + "/")
    first = wait_stats(page, "s.framesDrawn >= 5", 30)
    assert first["state"] == "live" and first["connected"] and first["stream"] == "demo"
    assert first["tiers"] and first["tier"] in first["tiers"]

    shot1 = page.evaluate(CANVAS_PROBE)
    assert (shot1["width"], shot1["height"]) == (first["width"], first["height"])
    assert shot1["std"] > 5, f"canvas looks blank: {shot1}"
    time.sleep(0.5)  # let at least a few frames be drawn
    wait_stats(page, f"s.framesDrawn >= {first['framesDrawn'] + 5}", 20)
    shot2 = page.evaluate(CANVAS_PROBE)
    assert shot2["hash"] != shot1["hash"], "the picture did not change"

    # the overlay's FPS over its 5 s window reaches link rate on loopback
    s = wait_stats(page, "s.fps > 10", 40)
    assert s["latencyP50Ms"] > 0 and s["latencyP95Ms"] >= s["latencyP50Ms"]
    assert s["kbps"] > 100 and s["acksSent"] >= 10
    overlay = page.inner_text("#overlay")
    assert "fps" in overlay and "latency" in overlay and "kbit/s" in overlay and s["tier"] in overlay

    # acks after draw reach the edge: its glass-to-glass latency histogram counts them
    wait_until("the edge counting the page's acks",
               lambda: metric(scrape(stack.url), GLASS_TO_GLASS_METRIC + "_count") >= acked_before + 10, 10)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    final = stats(page)
    page.screenshot(path=str(ARTIFACTS / "viewer.png"))
    (ARTIFACTS / "viewer-stats.json").write_text(json.dumps(final, indent=2))
    print(f"page: fps {final['fps']} latency p50 {final['latencyP50Ms']} ms p95 {final['latencyP95Ms']} ms "
          f"{final['kbps']} kbit/s tier {final['tier']} dropped {final['dropped']}; screenshot "
          f"{ARTIFACTS / 'viewer.png'}")
    assert Path(ARTIFACTS / "viewer.png").stat().st_size > 10_000
    assert page.page_errors == []


def test_page_parses_the_golden_vector(stack: Stack, page: Any) -> None:
    """The page's header parser agrees with framecast.protocol byte for byte (tests/data/frame_v1.bin)."""
    golden = (REPO / "tests" / "data" / "frame_v1.bin").read_bytes()
    expected = decode_frame(golden).header
    page.goto(stack.url + "/")
    page.wait_for_function("() => window.framecastViewer !== undefined")
    parse = """bytes => {
      const buf = new Uint8Array(bytes).buffer;
      try { return window.framecastViewer.parseHeader(buf); } catch (e) { return { error: e.message }; }
    }"""
    got = page.evaluate(parse, list(golden))
    assert got == {"codec": expected.codec, "tier": expected.tier, "flags": expected.flags,
                   "quality": expected.quality, "width": expected.width, "height": expected.height,
                   "headerLen": 40, "payloadLen": expected.payload_len, "id": expected.frame_id,
                   "captureUs": expected.capture_us, "publishUs": expected.publish_us}
    for bad, message in [(golden[:39], "too short"), (b"XX" + golden[2:], "bad magic"),
                         (golden[:2] + b"\x09" + golden[3:], "unsupported protocol version"),
                         (golden + b"\x00", "length mismatch")]:
        assert message in page.evaluate(parse, list(bad))["error"]


def test_tier_selector_stream_picker_and_controls(stack: Stack, page: Any) -> None:
    page.goto(stack.url + "/?stream=demo")
    s = wait_stats(page, "s.framesDrawn >= 3 && s.tiers.length > 0", 30)
    assert page.eval_on_selector_all("#stream option", "opts => opts.map(o => o.value)") == ["demo"]
    lowest = s["tiers"][-1]
    page.select_option("#tier", lowest)
    s = wait_stats(page, f"s.tier === {json.dumps(lowest)} && s.tierChoice === {json.dumps(lowest)}", 20)
    assert "tier=" + lowest in page.url
    page.select_option("#tier", "auto")
    wait_stats(page, 's.tierChoice === "auto"', 5)
    page.click("#fullscreen")
    page.wait_for_function("() => document.fullscreenElement && document.fullscreenElement.id === 'stage'",
                           timeout=scaled(5) * 1000)
    page.keyboard.press("f")
    page.wait_for_function("() => !document.fullscreenElement", timeout=scaled(5) * 1000)
    page.keyboard.press("s")
    assert page.is_hidden("#overlay")
    page.keyboard.press("s")
    assert page.is_visible("#overlay")
    assert page.page_errors == []


def test_page_reconnects_after_edge_restart(stack: Stack, page: Any) -> None:
    edge = stack.start_edge(name="edge-page-restart")
    port = int(edge.env["FRAMECAST_TEST_PORT"])
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        before = wait_stats(page, "s.framesDrawn >= 5", 30)
        edge.stop()  # SIGTERM: drain, then 1012 to every viewer
        wait_stats(page, "!s.connected", 20)
        edge = stack.start_edge(port=port, name="edge-page-restarted")
        after = wait_stats(page, f"s.reconnects >= 1 && s.framesDrawn >= {before['framesDrawn'] + 5}", 60)
        assert after["state"] == "live" and after["closeCode"] in (1012, 1001, 1006)
    finally:
        edge.stop()


def test_unknown_stream_says_so(stack: Stack, page: Any) -> None:
    page.goto(stack.url + "/?stream=nope")
    page.wait_for_selector("#banner:not([hidden])", timeout=scaled(20) * 1000)
    assert "unknown stream 'nope'" in page.inner_text("#banner")
    s = wait_stats(page, "s.closeCode === 4004", 5)
    assert s["reconnects"] == 0 and s["state"] == "reconnecting" and s["framesDrawn"] == 0


def test_page_shows_stalled_when_the_source_stops(stack: Stack, page: Any) -> None:
    source = stack.start_small_source("stall-page")
    try:
        page.goto(stack.url + "/?stream=stall-page")
        wait_stats(page, "s.framesDrawn >= 3", 30)
        source.stop()
        wait_stats(page, "s.stalled", 30)
        assert page.inner_text("#state") == "stalled"
        page.wait_for_selector("#banner:not([hidden])", timeout=scaled(10) * 1000)
        assert "stalled" in page.inner_text("#banner")
        source = stack.start_small_source("stall-page")
        drawn = stats(page)["framesDrawn"]
        s = wait_stats(page, f"!s.stalled && s.framesDrawn > {drawn}", 60)
        assert s["state"] == "live" and page.inner_text("#state") == "live"
        page.wait_for_selector("#banner", state="hidden", timeout=scaled(10) * 1000)
    finally:
        source.stop()


def test_page_backs_off_when_the_edge_is_full(stack: Stack, browser: Any) -> None:
    edge = stack.start_edge(0, "edge-full", "--max-viewers", "1")
    url = f"http://127.0.0.1:{edge.env['FRAMECAST_TEST_PORT']}/"
    first, second = browser.new_context(), browser.new_context()
    try:
        p1 = first.new_page()
        p1.goto(url)
        wait_stats(p1, "s.framesDrawn >= 2", 30)
        p2 = second.new_page()
        p2.goto(url)
        wait_stats(p2, "s.closeCode === 1013", 20)
        p2.wait_for_selector("#banner:not([hidden])")
        assert "edge is full" in p2.inner_text("#banner")
        assert stats(p2)["framesDrawn"] == 0
        first.close()  # the slot frees; the second page gets in on a later try (1013 back-off: 1-2 s, then 2-4 s)
        s = wait_stats(p2, "s.framesDrawn >= 2", 40)
        assert s["state"] == "live"
    finally:
        second.close()
        with contextlib.suppress(Exception):
            first.close()
        edge.stop()
