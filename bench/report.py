"""Markdown tables of the committed results, written into the docs between markers.

``python -m bench.report [--results DIR] [--doc PATH]`` (bench.run calls it
after a full run) rewrites docs/benchmarks.md from bench/results/*.json,
docs/reliability.md from bench/results/reliability/*.json (the reliability
tests' records, written with FRAMECAST_RECORD_RESULTS=1) and the dashboard
section of docs/operations.md from bench/results/dashboard.json
(``python -m tools.render_dashboard --native ... --results``).  Only the text
between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->`` is
replaced; the rest of each document is prose.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.constants import SUITE_FANOUT, SUITE_LINKS, SUITE_VIDEO
from bench.fanout import fanout_ratios
from framecast.provenance import describe

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs"
DEFAULT_DOC = DOCS / "benchmarks.md"
RELIABILITY_DOC = DOCS / "reliability.md"
OPERATIONS_DOC = DOCS / "operations.md"
RELIABILITY_RESULTS = "reliability"  # folder under the results: one JSON per record
DASHBOARD_RESULTS = "dashboard.json"
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
    header = ["KB", "viewers", "workers", "target", "CPU us per delivery", "rounds (us)", "x raw-acks",
              "x raw-acks by round", "fps min", "fps median", "p50 ms", "p95 ms", "RSS KB per viewer",
              "viewers' CPU s", "load 1m", "status"]
    ratios = {(r["target"], r["viewers"], r["payload_bytes"], r["workers"]): r for r in fanout_ratios(results)}
    rows = []
    for r in results:
        ratio = ratios.get((r["target"], r["viewers"], r["payload_bytes"], r["workers"]), {})
        rows.append([
            fmt(r["payload_bytes"], 0, KB), str(r["viewers"]), str(r["workers"]), r["target"],
            fmt(r["cpu_us_per_delivery"], 1), " / ".join(fmt(x, 1) for x in r.get("cpu_us_rounds") or []) or "–",
            fmt(ratio.get("ratio_to_raw_acks"), 2),
            " / ".join(fmt(x, 2) for x in ratio.get("ratio_rounds") or []) or "–",
            fmt(r["fps_min"], 1), fmt(r["fps_median"], 1), fmt(r["latency_p50_ms"], 1), fmt(r["latency_p95_ms"], 1),
            fmt(r["rss_per_viewer_kb"], 0), fmt(r["viewer_cpu_s"], 1), fmt(r["host_load_1m"], 1),
            r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}",
        ])  # fmt: skip
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


# --- docs/reliability.md: the reliability tests' records ------------------------------------------


class _Figures(string.Formatter):
    """str.format for a record's figures: None is "–", a list or dict is spelled out; a missing key raises."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return MISSING
        if isinstance(value, dict):
            return ", ".join(f"{k} {self.format_field(v, format_spec)}" for k, v in value.items())
        if isinstance(value, list):
            return ", ".join(self.format_field(v, format_spec) for v in value)
        return str(super().format_field(value, format_spec))


# record name (a regular expression) -> (section of docs/reliability.md, what the figures say)
RELIABILITY_ROWS: list[tuple[str, str, str]] = [
    (r"redis_sigkill_restart_\d+s_outage", "faults",
     "{outage_s:g} s outage, {viewers} viewers: `/readyz` 503 **{unready_after_kill_s} s** after the kill, 200 again "
     "**{ready_after_restart_s} s** after the restart; viewers resumed **{resume_after_restart_s} s** after the "
     "restart; {reconnects} reconnects; at most **{max_frames_first_second} frames** in the first second"),
    ("inference_restart", "faults",
     "`stalled` **{stalled_status_after_stop_s} s** after the inference exited; frames back "
     "**{frames_resume_after_restart_s} s** after the restart; {viewers} viewers, {reconnects} reconnects"),
    ("redis_memory_bounded", "faults",
     "`XLEN` max **{max_xlen}** for `--maxlen {maxlen}`; **{bytes_per_stream:,} B per stream** ({tiers} tiers), "
     "**{bytes_per_entry:,} B per entry**; `used_memory` {used_memory_mib} MiB, spread "
     "**{used_memory_spread_kib} KiB**"),
    ("redis_full_noeviction", "faults",
     "`maxmemory {maxmemory_mib}mb`: `used_memory` held at **{used_memory_mib_when_full} MiB**; frames back "
     "**{resume_after_raise_s} s** after memory was raised; {reconnects} reconnects"),
    ("viewer_faults", "faults",
     "never-reading + frozen viewers closed with 4008 (`--ack-timeout-s {ack_timeout_s:g}`) "
     "**{detect_never_reads_and_frozen_s} s** after the fault; {resets_mid_frame} resets cleaned up; healthy FPS "
     "**{healthy_fps_baseline} -> {healthy_fps_during}** (ratio {fps_ratio}); edge RSS **+{edge_rss_growth_mib} MiB**; "
     "fds {edge_fds_before_after}"),
    ("sigterm_50_viewers", "faults",
     "`/readyz` 503 **{unready_after_sigterm_s} s** after SIGTERM; all {viewers} closed with 1012 between "
     "**{first_close_s} and {last_close_s} s** (drain delay {drain_delay_s:g} s); exit 0 at **{exit_s} s** "
     "(drain timeout {drain_timeout_s:g} s)"),
    ("sigterm_behind_nginx", "faults",
     "{on_drained_replica} of {viewers} viewers on the drained replica, all receiving from the other one "
     "**{all_moved_to_other_replica_s} s** after SIGTERM; drained replica exited at {drained_exit_s} s"),
    ("watch_waits_for_starting_stream", "restarts",
     "`watch --wait` got {frames} frames, the first **{seconds_from_source_start} s** after the inference started"),
    ("recent_stream_after_empty_redis_restart", "restarts",
     "first status `{first_status}`; frames **{frames_after_source_back_s} s** after the source was back"),
    ("snapshot_idle_stream", "restarts",
     "snapshot of an undemanded tier in **{undemanded_tier_s} s**, of the idle tier in {idle_tier_s} s; "
     "**{burst_30_xrevrange} XREVRANGE** for 30 snapshots; unknown stream, 8 from one address: "
     "{unknown_from_one_address}; 4 more from each of two addresses: the second got {second_address}"),
    ("sentinel_failover", "topologies",
     "Sentinel: failover (kill to promoted replica seen) **{failover_s} s**; viewers' first frame captured after the "
     "kill **{resume_after_failover_s} s** after the failover (at most {resume_after_kill_s_max} s after the kill); "
     "`/readyz` 503 **{readyz_503_after_kill_s} s** after the kill, 200 again {readyz_200_after_failover_s} s after "
     "the failover"),
    ("cluster_master_failover", "topologies",
     "Cluster: failover **{failover_s} s**; that stream's viewers: first frame captured after the kill "
     "**{resume_s} s** after the kill; other streams: largest gap at the viewers **{other_streams_max_gap_s} s** "
     "({max_gap_before_kill_s} s in the 3 s before the kill), in capture time {other_streams_max_capture_gap_s} s, "
     "between their XADDs {other_streams_max_publish_gap_s} s; `/readyz` samples of 503: {readyz_503_samples}; "
     "edge bus errors {edge_bus_errors:g}"),
    (r"redis_acl_.+", "access",
     "inference and edge as their own users: **{top_tier_frames} frames** of the top tier in {seconds} s; "
     "{acl_denials} permission denials in `ACL LOG`"),
    ("connect_disconnect_storm", "hostile",
     "**{cycles} cycles in {seconds} s** ({cycles_per_s}/s: {kinds}); fds {fds_before_after}, threads "
     "{threads_before_after}, Redis connections {redis_conns_before_after}; RSS **+{rss_growth_mib} MiB**; "
     "bystander **{bystander_fps_during} FPS** during the storm"),
    ("access_control", "access",
     "{bad_tokens_rejected} kinds of bad token refused with 4001, {frames_before_rejection} frames before the close; "
     "per-address limit {per_ip_limit}; `/metrics` on the public port: {metrics_public_port_status}, served on "
     "{metrics_internal}"),
    (r"soak_\d+_viewers_\d+s", "load",
     "{viewers} viewers, {seconds} s: **{mean_viewer_fps} FPS per viewer** (source {source_fps}), "
     "{deliveries_per_s} deliveries/s at **{edge_cpu_percent} %** of one core for the edge; delivered/published: "
     "2-s windows p10 {p10_2s_delivered_ratio}, worst {min_2s_delivered_ratio}; 10-s windows worst "
     "{min_10s_delivered_ratio}; edge RSS **{edge_rss_mib_start_end} MiB, slope {rss_slope_mib_per_min} MiB/min**; "
     "fds {fds_min_max}, slope {fd_slope_per_min}/min; {reconnects} reconnects, {errors} errors"),
]
RELIABILITY_SECTIONS = ("faults", "restarts", "topologies", "hostile", "access", "load")


def reliability_records(results_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((results_dir / RELIABILITY_RESULTS).glob("*.json"))]


def _row_spec(name: str) -> tuple[int, str, str]:
    for i, (pattern, section, template) in enumerate(RELIABILITY_ROWS):
        if re.fullmatch(pattern, name):
            return i, section, template
    raise ValueError(f"no row for the reliability record {name!r}: add one to RELIABILITY_ROWS in bench/report.py")


def run_cell(prov: dict[str, Any]) -> str:
    """When and at which commit: the short form of framecast.provenance.describe (the machine is said once)."""
    date = prov["date"].replace("T", " ").removesuffix("Z")[:16] + " UTC"
    commit = prov.get("commit")
    if not commit:
        return f"committed {date[:10]} in {prov['committed_in'][:7]} (commit of the run not recorded)"
    return f"{date}, {commit[:7]}" + (" + local changes" if commit.endswith("+local") else "")


def command_cell(prov: dict[str, Any]) -> str:
    """The command that reruns a record: `pytest tests/reliability/x.py::test[id]` -> `x.py::test[id]`."""
    command = str(prov["command"])
    return f"`{command.removeprefix('pytest ').removeprefix('tests/reliability/')}`"


def reliability_table(records: list[dict[str, Any]], section: str) -> str:
    rows = []
    for r in records:
        order, where, template = _row_spec(r["test"])
        if where == section:
            rows.append((order, r["test"], [command_cell(r["provenance"]), _Figures().format(template, **r["figures"]),
                                             run_cell(r["provenance"])]))
    return table(["test", "measured", "run (UTC, commit)"], [row for *_, row in sorted(rows)])


def reliability_machine_line(records: list[dict[str, Any]]) -> str:
    machines: dict[str, list[str]] = {}
    for r in records:
        m = r["provenance"]["machine"]
        known = m["platform"] != "not recorded"  # transcribed from the docs of before provenance was recorded
        machines.setdefault(f"{m['cpus']} CPUs ({m['cpu_model']}), GPU: {m['gpu']}, {m['platform']}, "
                            f"Python {m['python']}" if known else "not recorded", []).append(r["test"])
    most, *others = sorted(machines, key=lambda m: -len(machines[m]))
    exceptions = "".join(f"; machine of {', '.join(machines[m])}: {m}" for m in others)
    return f"Machine of the records below: {most}{exceptions}."


def update_reliability_doc(results_dir: Path, doc: Path) -> None:
    records = reliability_records(results_dir)
    if not records:
        return
    for r in records:
        _row_spec(r["test"])  # every record has a row: a new record() needs a template, not silence
    text = replace_section(doc.read_text(), "reliability-machine", reliability_machine_line(records))
    for section in RELIABILITY_SECTIONS:
        text = replace_section(text, f"reliability-{section}", reliability_table(records, section))
    doc.write_text(text)


# --- docs/operations.md: the dashboard's values ---------------------------------------------------


def panel_value(value: float, unit: str) -> str:
    """One value as the dashboard shows it (the panel's Grafana unit)."""
    if not math.isfinite(value):
        return MISSING
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if value < 0.01 else f"{value * 1e3:.0f} ms"
    if unit == "bytes":  # Grafana's "bytes" are IEC
        return f"{value / 2**20:.1f} MiB" if value >= 2**20 else f"{value / 2**10:.1f} KiB"
    if unit == "Bps":
        return f"{value / 1e6:.2f} MB/s" if value >= 1e6 else f"{value / KB:.1f} KB/s"
    if unit == "percentunit":
        return f"{value * 100:.1f} %"
    if unit in ("ops", "fps") and value:
        return f"{value:.2f}/s" if unit == "ops" else f"{value:.1f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def dashboard_table(queries: list[dict[str, Any]]) -> str:
    """Last point of every panel's queries; series at 0 are summed into one "0" when nothing else is shown."""
    panels: dict[str, list[str]] = {}
    for q in queries:
        shown = panels.setdefault(q["panel"], [])
        for label, value in q["last"].items():
            if value or len(q["last"]) == 1:
                shown.append(f"{label} {panel_value(value, q['unit'])}")
    rows = []
    for panel, shown in panels.items():
        quiet = any("ALERTS" in q["expr"] for q in queries if q["panel"] == panel)
        rows.append([panel, "; ".join(shown) or ("none pending or firing" if quiet else "0")])
    return table(["panel", "value at the end"], rows)


def update_operations_doc(results_dir: Path, doc: Path) -> None:
    path = results_dir / DASHBOARD_RESULTS
    if not path.exists():
        return
    document = json.loads(path.read_text())
    body = (f"{document['scenario']} Measured {describe(document['provenance'])}.\n\n"
            + dashboard_table(document["queries"]))
    doc.write_text(replace_section(doc.read_text(), "dashboard", body))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--reliability-doc", type=Path, default=RELIABILITY_DOC)
    parser.add_argument("--operations-doc", type=Path, default=OPERATIONS_DOC)
    args = parser.parse_args(argv)
    update_doc(args.results, args.doc)
    update_reliability_doc(args.results, args.reliability_doc)
    update_operations_doc(args.results, args.operations_doc)


if __name__ == "__main__":
    main()
