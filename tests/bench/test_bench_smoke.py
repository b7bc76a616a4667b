"""Smoke test of the benchmark harness: quick mode on loopback, every field present.

No timing assertions: the numbers depend on the machine.  The link scenarios
need root and network namespaces; where they are unavailable the test that
touches them is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from bench.clients import FrameRecord
from bench.fanout import FanoutResult
from bench.linkbench import LinkResult
from bench.metrics import id_gaps, percentile, recovery_time_s
from bench.report import marker, update_doc
from bench.run import main
from bench.scene import HEIGHT, WIDTH, SceneRenderer, encode_jpeg
from bench.video_stack import VIEWERS, run_video_suite

from bench import linkemu

BASELINES = ["seed-original", "seed-optimized"]
LINK_FIELDS = {f.name for f in dataclasses.fields(LinkResult)}
FANOUT_FIELDS = {f.name for f in dataclasses.fields(FanoutResult)}
SUITE_FIELDS = {"suite", "schema_version", "mode", "created_unix_s", "machine", "results"}


def test_scene_renders_720p_jpeg() -> None:
    frame = SceneRenderer().render(7)
    assert frame.shape == (HEIGHT, WIDTH, 3)
    assert encode_jpeg(frame, 70)[:2] == b"\xff\xd8"


def test_pure_metrics() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert id_gaps([1, 2, 5, 6, 9]) == 4
    # latency 1000 ms until t=12, then 50 ms: recovered 2 s after a step at t=10.
    frames = [FrameRecord(i, 10 + i * 0.1, 10 + i * 0.1 - (1.0 if i < 20 else 0.05), 1) for i in range(100)]
    recovery = recovery_time_s(frames, 10.0, 20.0, threshold_ms=100.0)
    assert recovery is not None and 2.0 <= recovery <= 2.6
    assert recovery_time_s(frames[:40], 10.0, 20.0, threshold_ms=100.0) is None


@pytest.mark.timeout(180)
def test_quick_run_writes_complete_json(tmp_path: Path) -> None:
    assert main(["--quick", "--systems", *BASELINES, "--out", str(tmp_path)]) == 0
    links = json.loads((tmp_path / "links.json").read_text())
    assert links.keys() >= SUITE_FIELDS
    assert {(r["system"], r["scenario"]) for r in links["results"]} == {(s, "loopback") for s in BASELINES}
    for row in links["results"]:
        assert row.keys() == LINK_FIELDS
        assert row["status"] == "ok", row["reason"]
        assert row["frames"] > 0
    fanout = json.loads((tmp_path / "fanout.json").read_text())
    assert fanout.keys() >= SUITE_FIELDS
    for row in fanout["results"]:
        assert row.keys() == FANOUT_FIELDS
    assert any(r["status"] == "ok" for r in fanout["results"])
    assert (tmp_path / "links_fps_latency.png").stat().st_size > 0
    video = json.loads((tmp_path / "video.json").read_text())  # the real stack: H.264 and JPEG viewers
    assert video.keys() >= SUITE_FIELDS and video["scenario"] == "loopback"
    rows = {r["viewer"]: r for r in video["results"]}
    assert set(rows) == {"video auto", "jpeg auto"}
    assert all(r["status"] == "ok" and r["frames"] > 0 for r in rows.values()), rows
    assert set(rows["video auto"]["tiers"]) <= {"video-high", "low"} and rows["video auto"]["decode_errors"] == 0
    assert all(not t.startswith("video") for t in rows["jpeg auto"]["tiers"])
    assert (tmp_path / "video_vs_jpeg.png").stat().st_size > 0
    doc = tmp_path / "benchmarks.md"
    sections = ("machine", "links", "step", "fanout", "video", "video-ratios")
    doc.write_text("".join(f"{marker(n, 'start')}\n{marker(n, 'end')}\n" for n in sections))
    update_doc(tmp_path, doc)
    assert "| loopback | seed-optimized |" in doc.read_text()
    assert "| video auto | h264,jpeg | auto |" in doc.read_text()


@pytest.fixture
def emulated_link() -> None:
    """Skip (with the reason) where the link emulation cannot run: it needs root and network namespaces."""
    reason = linkemu.unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("emulated_link")
def test_link_scenario_or_skip(tmp_path: Path) -> None:
    argv = ["--scenarios", "8mbit-50ms", "--systems", "seed-optimized", "--duration-scale", "0.3"]
    assert main([*argv, "--no-fanout", "--no-video", "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "links.json").read_text())["results"]
    assert row.keys() == LINK_FIELDS
    assert row["status"] == "ok", row["reason"]
    assert row["rate_mbit"] == 8.0


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("emulated_link")
def test_video_suite_on_the_emulated_link_or_skip(tmp_path: Path) -> None:
    doc = run_video_suite((8.0, 50.0), 2.0, 1.0, tmp_path, VIEWERS[:1])
    (row,) = doc["results"]
    assert doc["scenario"] == "8mbit-50ms" and row["status"] == "ok", row["reason"]
    assert row["frames"] > 0 and row["decode_errors"] == 0 and row["latency_p50_ms"] > 25  # the 50 ms round trip


def test_a_fanout_row_of_several_rounds_is_its_median_round() -> None:
    from dataclasses import replace

    from bench.fanout import median_rounds

    base = FanoutResult("framecast-acking", 500, 10_000, 1, "ok", "", 5.0, cpu_us_per_delivery=0.0, fps_min=30.0)
    rounds = [replace(base, cpu_us_per_delivery=us, fps_min=fps) for us, fps in ((30.0, 29.0), (20.0, 30.0),
                                                                                  (25.0, 29.5))]
    row = median_rounds(rounds)
    assert (row.cpu_us_per_delivery, row.fps_min) == (25.0, 29.5)  # every field from the median round
    assert row.cpu_us_rounds == [30.0, 20.0, 25.0]  # in the order they ran
    failed = replace(base, status="error", reason="boom", cpu_us_per_delivery=None)
    assert median_rounds([failed, rounds[1]]).cpu_us_per_delivery == 20.0
    assert median_rounds([failed]).status == "error"
