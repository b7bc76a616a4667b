"""Benchmark entry point: ``python -m bench.run [--quick] [--scenarios ...]``.

Runs the link suite (every scenario x every system, link emulation when
available), the fan-out suite and the video suite (H.264 against JPEG tiers
through the real stack on the 8 Mbit/s, 50 ms link), writes one JSON file per suite under
``--out`` (default bench/results) and the PNG plots beside them.  ``--quick``
is the CI smoke mode: loopback only, about 1-2 s per system, no namespaces.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import linkemu
from bench.constants import (
    ALL_SYSTEMS,
    FANOUT_PAYLOAD_SIZES,
    FANOUT_ROUNDS,
    FANOUT_VIEWER_COUNTS,
    FANOUT_WINDOW_S,
    FANOUT_WORKER_ROWS,
    FRAMECAST,
    RESULTS_SCHEMA_VERSION,
    SUITE_FANOUT,
    SUITE_LINKS,
    SUITE_VIDEO,
    SystemName,
)
from bench.fanout import (
    FRAMECAST_ACKING,
    FRAMECAST_NO_ACKS,
    RAW_ACKS,
    TARGETS,
    FanoutResult,
    fanout_ratios,
    median_rounds,
    run_row,
)
from bench.linkbench import STATUS_OK, STATUS_SKIPPED, LinkResult, describe, run_one
from bench.plots import plot_fanout, plot_links, plot_video
from bench.report import DEFAULT_DOC, update_doc
from bench.scenarios import ALL_SCENARIOS, LINK_SCENARIOS, LOOPBACK_QUICK, Scenario, scaled
from bench.systems import unavailable_reason
from bench.video_stack import VIEWERS, run_video_suite
from framecast.provenance import machine_info, provenance

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
WORK_SUBDIR = "tmp"
QUICK_FANOUT_VIEWERS = (10,)
QUICK_FANOUT_SIZES = (10_000,)
QUICK_FANOUT_WINDOW_S = 1.0
JSON_SUFFIX = ".json"
# video suite: H.264 tiers against JPEG tiers through the real stack (bench.video_stack)
VIDEO_LINK = (8.0, 50.0)  # the link: 8 Mbit/s bottleneck, 50 ms round trip
FULL_VIDEO_SECONDS, FULL_VIDEO_WARMUP_S = 15.0, 3.0
QUICK_VIDEO_SECONDS, QUICK_VIDEO_WARMUP_S = 2.0, 1.0
QUICK_VIDEO_VIEWERS = VIEWERS[:2]
MODE_QUICK = "quick"
MODE_FULL = "full"


def suite_document(suite: str, mode: str, rows: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "suite": suite,
        "schema_version": RESULTS_SCHEMA_VERSION,
        "mode": mode,
        "created_unix_s": time.time(),
        "machine": machine_info(),
        "provenance": provenance(),
        **extra,
        "results": rows,
    }


def run_links(scenarios: list[Scenario], systems: list[SystemName], workdir: Path, log: Any) -> list[dict[str, Any]]:
    link_reason = linkemu.unavailable_reason() if any(s.link for s in scenarios) else None
    rows: list[dict[str, Any]] = []
    for scenario in scenarios:
        for system in systems:
            reason = (link_reason if scenario.link else None) or unavailable_reason(system)
            if reason:
                row = LinkResult(system, scenario.name, STATUS_SKIPPED, reason)
                describe(row, scenario)
            else:
                row = run_one(system, scenario, workdir)
            rows.append(row.to_json())
            print(_one_line(row), file=log, flush=True)
    return rows


def _one_line(row: LinkResult) -> str:
    if row.status != STATUS_OK:
        return f"{row.scenario:>22} {row.system:>15}: {row.status} ({row.reason})"
    return (
        f"{row.scenario:>22} {row.system:>15}: {row.fps:5.1f} fps  "
        f"p50 {row.latency_p50_ms:8.0f} ms  p95 {row.latency_p95_ms:8.0f} ms  "
        f"{(row.bytes_per_frame or 0) / 1e3:5.1f} KB/frame  drops {row.drops}"
    )


def _video_line(scenario: str, row: dict[str, Any]) -> str:
    if row["status"] != STATUS_OK:
        return f"{scenario:>22} {row['viewer']:>15}: {row['status']} ({row['reason']})"
    return (f"{scenario:>22} {row['viewer']:>15}: {row['fps']:5.1f} fps  p50 {row['latency_p50_ms']:8.0f} ms  "
            f"p95 {row['latency_p95_ms']:8.0f} ms  {(row['bytes_per_frame'] or 0) / 1e3:5.1f} KB/frame  "
            f"tiers {row['tiers']}")


def run_fanout_suite(viewer_counts: tuple[int, ...], sizes: tuple[int, ...], window_s: float, with_framecast: bool,
                     worker_rows: tuple[tuple[int, int, int], ...], log: Any, rounds: int = 1) -> list[dict[str, Any]]:
    """Every target at every size and viewer count (the same offered load), then the worker rows; the whole plan
    `rounds` times over, each row its median round (`median_rounds`)."""
    targets = [t for t in TARGETS if with_framecast or t not in (FRAMECAST_ACKING, FRAMECAST_NO_ACKS)]
    plan = [(t, n, size, 1) for size in sizes for n in viewer_counts for t in targets]
    if with_framecast:
        plan += [(t, n, size, w) for n, size, w in worker_rows for t in (FRAMECAST_ACKING, RAW_ACKS)]
    measured: list[list[FanoutResult]] = [[] for _ in plan]
    for round_no in range(1, rounds + 1):
        for (target, n, size, workers), seen in zip(plan, measured, strict=True):
            row = run_row(target, n, size, window_s, workers if target == FRAMECAST_ACKING else 1)
            seen.append(row)
            print(f"[round {round_no}/{rounds}] {_fanout_line(row)}", file=log, flush=True)
    return [asdict(median_rounds(seen)) for seen in measured]


def _fanout_line(r: FanoutResult) -> str:
    head = f"fan-out {r.target:>20} x{r.viewers:<5} {r.payload_bytes / 1e3:3.0f} KB w{r.workers}"
    if r.status != STATUS_OK:
        return f"{head}: {r.status} ({r.reason})"
    return (f"{head}: {r.cpu_us_per_delivery} us/delivery, fps min {r.fps_min} median {r.fps_median}, "
            f"p50 {r.latency_p50_ms or 0:.0f} ms p95 {r.latency_p95_ms or 0:.0f} ms, {r.rss_per_viewer_kb} KB/viewer")


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=1))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke mode: loopback only, ~1-2 s per system")
    parser.add_argument("--scenarios", nargs="+", choices=sorted(ALL_SCENARIOS), help="scenarios to run")
    parser.add_argument("--systems", nargs="+", choices=list(ALL_SYSTEMS), default=list(ALL_SYSTEMS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--duration-scale", type=float, default=1.0, help="multiply every duration")
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out suite")
    parser.add_argument("--fanout-rounds", type=int, default=FANOUT_ROUNDS,
                        help="run the fan-out plan this many times; each row reports its median round (not --quick)")
    parser.add_argument("--no-links", action="store_true", help="skip the link suite")
    parser.add_argument("--no-video", action="store_true", help="skip the video suite (H.264 vs JPEG tiers)")
    parser.add_argument(
        "--update-docs", action="store_true", help=f"rewrite the result tables in {DEFAULT_DOC.name} from --out"
    )
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # SystemExit unwinds the context managers, so namespaces, qdiscs and servers are removed.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    mode = MODE_QUICK if args.quick else MODE_FULL
    if args.scenarios:
        scenarios = [ALL_SCENARIOS[name] for name in args.scenarios]
    else:
        scenarios = [LOOPBACK_QUICK] if args.quick else list(LINK_SCENARIOS)
    scenarios = [scaled(s, args.duration_scale) for s in scenarios]
    out: Path = args.out
    workdir = out / WORK_SUBDIR
    workdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not args.no_links:
        rows = run_links(scenarios, args.systems, workdir, sys.stdout)
        extra = {"scenarios": [asdict(s) for s in scenarios], "systems": args.systems}
        path = out / f"{SUITE_LINKS}{JSON_SUFFIX}"
        write_json(path, suite_document(SUITE_LINKS, mode, rows, extra))
        written += [path, *plot_links(rows, out)]
    if not args.no_fanout:
        counts = QUICK_FANOUT_VIEWERS if args.quick else FANOUT_VIEWER_COUNTS
        sizes = QUICK_FANOUT_SIZES if args.quick else FANOUT_PAYLOAD_SIZES
        window = (QUICK_FANOUT_WINDOW_S if args.quick else FANOUT_WINDOW_S) * args.duration_scale
        rounds = 1 if args.quick else args.fanout_rounds
        rows = run_fanout_suite(counts, sizes, window, FRAMECAST in args.systems,
                                () if args.quick else FANOUT_WORKER_ROWS, sys.stdout, rounds)
        path = out / f"{SUITE_FANOUT}{JSON_SUFFIX}"
        extra = {"viewers": list(counts), "window_s": window, "payload_bytes": list(sizes), "fps": 30.0,
                 "rounds": rounds, "ratios": fanout_ratios(rows)}
        write_json(path, suite_document(SUITE_FANOUT, mode, rows, extra))
        written += [path, *plot_fanout(rows, out)]
    if not args.no_video:
        if args.quick:
            video = run_video_suite(None, QUICK_VIDEO_SECONDS * args.duration_scale, QUICK_VIDEO_WARMUP_S, workdir,
                                    QUICK_VIDEO_VIEWERS)
        else:
            video = run_video_suite(VIDEO_LINK, FULL_VIDEO_SECONDS * args.duration_scale, FULL_VIDEO_WARMUP_S,
                                    workdir)
        for row in video["results"]:
            print(_video_line(video["scenario"], row), flush=True)
        path = out / f"{SUITE_VIDEO}{JSON_SUFFIX}"
        rows = video.pop("results")
        write_json(path, suite_document(SUITE_VIDEO, mode, rows, video))
        written += [path, *plot_video(rows, video["scenario"], out)]
    if args.update_docs:
        update_doc(out, DEFAULT_DOC)
        written.append(DEFAULT_DOC)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
