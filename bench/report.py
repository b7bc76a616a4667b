"""Markdown tables of the results, written into docs/benchmarks.md between markers.

``python -m bench.report [--results DIR] [--doc PATH]`` (bench.run calls it
after a full run).  Only the text between ``<!-- bench:NAME:start -->`` and
``<!-- bench:NAME:end -->`` is replaced; the rest of the document is prose.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.constants import SUITE_FANOUT, SUITE_LINKS, SUITE_VIDEO
from bench.fanout import fanout_ratios
from framecast.provenance import describe

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
MISSING = "–"
KB = 1e3
SECTION_LINKS = "links"
SECTION_STEP = "step"
SECTION_FANOUT = "fanout"
SECTION_MACHINE = "machine"
SECTION_VIDEO = "video"
SECTION_VIDEO_RATIOS = "video-ratios"


def marker(name: str, edge: str) -> str:
    return f"<!-- bench:{name}:{edge} -->"


def fmt(value: Any, digits: int = 0, scale: float = 1.0) -> str:
    if value is None:
        return MISSING
    return f"{value / scale:,.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def links_table(results: list[dict[str, Any]]) -> str:
    header = [
        "scenario", "system", "FPS", "link FPS at its size", "p50 ms", "p95 ms", "p99 ms",
        "floor ms", "msg KB/frame", "wire KB/frame", "drops", "serving CPU s", "source FPS", "host load",
        "status",
    ]  # fmt: skip
    rows = []
    for r in results:
        rows.append(
            [
                r["scenario"], r["system"], fmt(r["fps"], 1), fmt(r["link_capacity_fps"], 1),
                fmt(r["latency_p50_ms"]), fmt(r["latency_p95_ms"]), fmt(r["latency_p99_ms"]),
                fmt(r["latency_floor_ms"]), fmt(r["bytes_per_frame"], 1, KB),
                fmt(r["wire_bytes_per_frame"], 1, KB), fmt(r["drops"]), fmt(r["serving_cpu_s"], 2),
                fmt(r["source_fps"], 1), fmt(r["host_loadavg_1m"], 1),
                r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}",
            ]
        )  # fmt: skip
    return table(header, rows)


def step_table(results: list[dict[str, Any]]) -> str:
    header = [
        "system", "before: FPS", "before: p50 ms", "after: FPS", "after: p50 ms", "after: p95 ms",
        "recovery threshold ms", "recovery s",
    ]  # fmt: skip
    rows = []
    for r in results:
        step = r.get("step")
        if not step:
            continue
        before, after = step["before"], step["after"]
        recovery = "never" if step["recovery_s"] is None else fmt(step["recovery_s"], 1)
        rows.append(
            [
                r["system"], fmt(before["fps"], 1), fmt(before["latency_p50_ms"]), fmt(after["fps"], 1),
                fmt(after["latency_p50_ms"]), fmt(after["latency_p95_ms"]),
                fmt(step["recovery_threshold_ms"]), recovery,
            ]
        )  # fmt: skip
    return table(header, rows)


def fanout_table(results: list[dict[str, Any]]) -> str:
    header = ["KB", "viewers", "workers", "target", "CPU us per delivery", "x raw-acks", "fps min", "fps median",
              "p50 ms", "p95 ms", "RSS KB per viewer", "viewers' CPU s", "load 1m", "status"]
    ratios = {(r["target"], r["viewers"], r["payload_bytes"], r["workers"]): r["ratio_to_raw_acks"]
              for r in fanout_ratios(results)}
    rows = [
        [
            fmt(r["payload_bytes"], 0, KB), str(r["viewers"]), str(r["workers"]), r["target"],
            fmt(r["cpu_us_per_delivery"], 1), fmt(ratios.get((r["target"], r["viewers"], r["payload_bytes"],
                                                               r["workers"])), 2),
            fmt(r["fps_min"], 1), fmt(r["fps_median"], 1), fmt(r["latency_p50_ms"], 1), fmt(r["latency_p95_ms"], 1),
            fmt(r["rss_per_viewer_kb"], 0), fmt(r["viewer_cpu_s"], 1), fmt(r["host_load_1m"], 1),
            r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}",
        ]
        for r in results
    ]  # fmt: skip
    return table(header, rows)


def video_table(results: list[dict[str, Any]]) -> str:
    header = ["viewer", "offers", "tier choice", "tiers received (frames)", "FPS", "KB/frame", "kbit/s",
              "p50 ms", "p95 ms", "first frame ms", "decode errors", "inference cores", "host load", "status"]
    rows = []
    for r in results:
        if r["status"] != "ok":
            rows.append([r["viewer"], *[MISSING] * 12, f"{r['status']}: {r['reason']}"])
            continue
        received = ", ".join(f"{k} {v}" for k, v in sorted(r["tiers"].items(), key=lambda kv: -kv[1]))
        rows.append([
            r["viewer"], ",".join(r["codecs"]), r["tier_choice"], received or MISSING, fmt(r["fps"], 1),
            fmt(r["bytes_per_frame"], 1, KB), fmt(r["kbit_s"]), fmt(r["latency_p50_ms"]), fmt(r["latency_p95_ms"]),
            fmt(r["first_frame_ms"]), fmt(r["decode_errors"]), fmt(r["inference_cpu_cores"], 2),
            fmt(r["host_loadavg_1m"], 1), r["status"],
        ])  # fmt: skip
    return table(header, rows)


def video_ratios_table(comparisons: list[dict[str, Any]]) -> str:
    header = ["video", "against JPEG", "FPS ratio", "bytes/frame ratio", "p50 diff ms", "p95 diff ms",
              "target met"]
    rows = [[c["video"], c["jpeg"], fmt(c["fps_ratio"], 2), fmt(c["bytes_ratio"], 3), fmt(c["p50_diff_ms"]),
             fmt(c["p95_diff_ms"]), "yes" if c["target_met"] else "no"] for c in comparisons]
    return table(header, rows)


def machine_line(document: dict[str, Any]) -> str:
    """Which run a table comes from: mode, date, commit, command and machine (the JSON's provenance)."""
    return f"Measured {document['mode']} run: {describe(document['provenance'])}."


def replace_section(text: str, name: str, body: str) -> str:
    """Replace what lies between the start and end markers of ``name``."""
    start, end = marker(name, "start"), marker(name, "end")
    if start not in text or end not in text:
        raise ValueError(f"markers for section {name!r} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_doc(results_dir: Path, doc: Path) -> None:
    text = doc.read_text()
    sections: list[tuple[str, str, Callable[[list[dict[str, Any]]], str]]] = [
        (SUITE_LINKS, SECTION_LINKS, links_table),
        (SUITE_LINKS, SECTION_STEP, step_table),
        (SUITE_FANOUT, SECTION_FANOUT, fanout_table),
    ]
    for suite, section, render in sections:
        path = results_dir / f"{suite}.json"
        if path.exists():
            document = json.loads(path.read_text())
            body = render(document["results"])
            if suite == SUITE_FANOUT:  # the links tables share the machine line above them
                body = machine_line(document) + "\n\n" + body
            text = replace_section(text, section, body)
            if suite == SUITE_LINKS:
                text = replace_section(text, SECTION_MACHINE, machine_line(document))
    path = results_dir / f"{SUITE_VIDEO}.json"
    if path.exists():
        document = json.loads(path.read_text())
        text = replace_section(text, SECTION_VIDEO, f"{document['scenario']}, {document['seconds']:g} s per viewer. "
                               f"{machine_line(document)}\n\n" + video_table(document["results"]))
        text = replace_section(text, SECTION_VIDEO_RATIOS, video_ratios_table(document.get("comparisons", [])))
    doc.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    args = parser.parse_args(argv)
    update_doc(args.results, args.doc)


if __name__ == "__main__":
    main()
