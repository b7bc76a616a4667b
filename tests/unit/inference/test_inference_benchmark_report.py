"""The benchmark's report helpers (pure): markdown from results, and the marked section of a doc."""

from __future__ import annotations

from pathlib import Path

from bench.inference import BEGIN, END, markdown, update_doc


def results() -> dict[str, object]:
    enc = [{"encoder": e, "threads": t, "in_flight": f, "fps": fps, "fps_median_of_rounds": fps * 0.8,
            "cpu_ms_per_frame": 6.0, "speedup_vs_opencv_1t": fps / 100.0}
           for e, t, f, fps in (("opencv", 1, 1, 100.0), ("simplejpeg", 2, 2, 190.0))]
    stages = {"capture": 1.0, "inference": 9.0, "encode": 3.0, "publish": 0.5}
    return {"provenance": {"date": "2026-12-01T09:30:00Z", "commit": "0123456789abcdef", "command": "bench",
                           "machine": {"cpus": 2, "cpu_model": "test cpu", "platform": "test", "python": "3.11",
                                       "gpu": "none"}},
            "machine": {"cpus": 2, "platform": "test", "loadavg_before": [1.0, 1.0, 1.0],
                        "loadavg_after": [1.5, 1.0, 1.0]},
            "encode": enc,
            "encode_ms_per_tier_1t": {"simplejpeg": {"high": 2.4, "mid": 2.3, "low": 1.0},
                                      "opencv": {"high": 2.6, "mid": 2.5, "low": 1.1}},
            "model_alone": {"median_ms": 9.1, "min_ms": 7.8, "cpu_ms_median": 9.0, "torch_threads": 1},
            "pipeline": [{"demanded": ["high"], "publish_fps": 30.0, "ms_per_stage": stages,
                          "capture_to_publish_ms": 17.0, "cpu_ms_per_published_frame": 15.0, "drops": {}}]}


def test_markdown_has_every_figure() -> None:
    text = markdown(results())
    assert text.startswith("Run: 2026-12-01 09:30 UTC, commit 0123456, `bench`; 2 CPUs (test cpu)")
    assert "| simplejpeg | 2 | 2 | 190.0 | 152.0 | 6.00 | 1.90x |" in text
    assert "| demanded: high | 30.0 | 1.0 | 9.0 | 3.0 | 0.5 | 17.0 | 15.0 | none |" in text
    assert "median 9.1 ms wall" in text


def test_update_doc_replaces_only_the_marked_section(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{BEGIN}\nold figures\n{END}\nafter\n")
    update_doc(doc, "new figures")
    assert doc.read_text() == f"before\n{BEGIN}\nnew figures\n{END}\nafter\n"
