"""One measured run: a system, a scenario, a measuring client, one result row.

Owns the timeline of a run: start the link and the server, start the client,
sample server CPU at the window edges, step the rate when asked, then join the
client's records with capture times and summarize them with `bench.metrics`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.clients import ClientRun
from bench.constants import CLIENT_GRACE_S, SystemName
from bench.linkemu import EmulatedLink, LinkUnavailable, stop_process
from bench.metrics import (
    RECOVERY_FLOOR_FACTOR,
    FrameStats,
    id_rate_fps,
    latency_floor_ms,
    latency_series,
    link_capacity_fps,
    summarize,
    with_captures,
)
from bench.scenarios import Scenario
from bench.systems import CpuReading, RunningSystem, SystemUnavailable, start_system

LOOPBACK_HOST = "127.0.0.1"
STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
STATUS_ERROR = "error"
MB = 1e6
MS = 1e3
MBIT = 1e6
BITS_PER_BYTE = 8
RELAY_LIFETIME_MARGIN_S = 60.0


@dataclass(frozen=True)
class StepResult:
    """Before/after a mid-run rate step, and how long latency took to recover."""

    step_at_s: float
    wire_bytes_per_frame_after: float | None
    rate_before_mbit: float
    rate_after_mbit: float
    before: dict[str, Any]
    after: dict[str, Any]
    recovery_threshold_ms: float | None
    recovery_s: float | None


@dataclass
class LinkResult:
    """One (system, scenario) row; every field always present (None if unknown)."""

    system: str
    scenario: str
    status: str
    reason: str = ""
    rate_mbit: float | None = None
    rtt_ms: float | None = None
    duration_s: float | None = None
    warmup_s: float | None = None
    frames: int | None = None
    fps: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    bytes_per_frame: float | None = None
    wire_bytes_per_frame: float | None = None
    goodput_mbit: float | None = None
    wire_mbit: float | None = None
    drops: int | None = None
    frames_produced: int | None = None
    source_fps: float | None = None
    server_counters: dict[str, Any] = field(default_factory=dict)
    time_to_first_frame_ms: float | None = None
    link_capacity_fps: float | None = None
    fps_vs_capacity: float | None = None
    latency_floor_ms: float | None = None
    p50_vs_floor: float | None = None
    serving_cpu_s: float | None = None
    process_cpu_s: float | None = None
    producer_cpu_s: float | None = None
    rss_mb: float | None = None
    host_loadavg_1m: float | None = None
    step: StepResult | None = None
    latency_series: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _link_context(scenario: Scenario) -> contextlib.AbstractContextManager[EmulatedLink | None]:
    if scenario.link is None:
        return contextlib.nullcontext()
    return EmulatedLink(scenario.link)


@contextlib.contextmanager
def _running(system: RunningSystem) -> Iterator[RunningSystem]:
    try:
        yield system
    finally:
        system.stop()


def _client_argv(system: SystemName, url: str, duration_s: float, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "bench.clients", "--system", system, "--url", url,
        "--duration", f"{duration_s:g}", "--out", str(out),
    ]  # fmt: skip


def _sleep_until(wall_s: float) -> None:
    delay = wall_s - time.time()
    if delay > 0:
        time.sleep(delay)


def run_one(system_name: SystemName, scenario: Scenario, workdir: Path) -> LinkResult:
    """Run ``system_name`` over ``scenario``; errors become a row, never raise."""
    base = LinkResult(system_name, scenario.name, STATUS_ERROR)
    describe(base, scenario)
    try:
        return _run_one(system_name, scenario, workdir, base)
    except (SystemUnavailable, LinkUnavailable) as exc:
        base.status, base.reason = STATUS_SKIPPED, str(exc)
    except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        base.status, base.reason = STATUS_ERROR, repr(exc)
    return base


def describe(row: LinkResult, scenario: Scenario) -> None:
    """Copy the scenario's link and durations into ``row``."""
    row.rate_mbit = scenario.link.rate_mbit if scenario.link else None
    row.rtt_ms = scenario.link.rtt_ms if scenario.link else None
    row.duration_s = scenario.duration_s
    row.warmup_s = scenario.warmup_s


def _run_one(system_name: SystemName, scenario: Scenario, workdir: Path, row: LinkResult) -> LinkResult:
    tag = f"{scenario.name}-{system_name}"
    records_path = workdir / f"{tag}-client.json"
    with _link_context(scenario) as link:
        host = link.host_addr if link else LOOPBACK_HOST
        with _running(start_system(system_name, host, workdir / f"{tag}-server.log")) as system:
            if link is not None:
                lifetime = scenario.duration_s + RELAY_LIFETIME_MARGIN_S
                relay_port = link.start_relay(system.port, workdir / f"{tag}-relay.log", lifetime)
                url = f"ws://{LOOPBACK_HOST}:{relay_port}{system.ws_path}"
                argv = link.ns_argv(_client_argv(system_name, url, scenario.duration_s, records_path))
            else:
                url = f"ws://{host}:{system.port}{system.ws_path}"
                argv = _client_argv(system_name, url, scenario.duration_s, records_path)
            t0 = time.time()
            client = subprocess.Popen(argv, cwd=_repo_root(), stderr=subprocess.PIPE)
            try:
                samples = _timeline(scenario, t0, system, link)
                _, stderr = client.communicate(timeout=scenario.duration_s + CLIENT_GRACE_S)
            finally:
                stop_process(client)
            if client.returncode != 0:
                raise ValueError(f"client failed ({client.returncode}): {stderr.decode()[-500:]}")
            run = ClientRun.from_json(json.loads(records_path.read_text()))
            frames = run.frames
            if frames:
                ids = [f.frame_id for f in frames]
                frames = with_captures(frames, system.captures(min(ids), max(ids)))
            counters = system.counters()
    _fill(row, scenario, run, frames, t0, samples, counters)
    return row


@dataclass(frozen=True)
class Samples:
    """Server CPU and bottleneck byte counters at the window edges (and the step)."""

    cpu_start: CpuReading
    cpu_end: CpuReading
    wire_start: int | None
    wire_step: int | None
    wire_end: int | None


def _wire(link: EmulatedLink | None) -> int | None:
    return None if link is None else link.sent_bytes()


def _timeline(scenario: Scenario, t0: float, system: RunningSystem, link: EmulatedLink | None) -> Samples:
    _sleep_until(t0 + scenario.warmup_s)
    cpu_start, wire_start = system.cpu(), _wire(link)
    wire_step = None
    if scenario.is_step and link is not None:
        assert scenario.step_at_s is not None and scenario.step_to_mbit is not None
        _sleep_until(t0 + scenario.step_at_s)
        wire_step = _wire(link)
        link.set_rate(scenario.step_to_mbit)
    _sleep_until(t0 + scenario.duration_s)
    return Samples(cpu_start, system.cpu(), wire_start, wire_step, _wire(link))


def _fill(
    row: LinkResult,
    scenario: Scenario,
    run: ClientRun,
    frames: list[Any],
    t0: float,
    samples: Samples,
    counters: dict[str, Any],
) -> None:
    start, end = t0 + scenario.warmup_s, t0 + scenario.duration_s
    stats = summarize(frames, start, end)
    row.status = STATUS_OK if frames else STATUS_ERROR
    row.reason = run.error if frames else (run.error or "no frames received")
    for key, value in asdict(stats).items():
        if hasattr(row, key) and key != "window_s":
            setattr(row, key, value)
    row.frames_produced = counters.get("frames_produced")
    row.server_counters = counters
    if frames:
        row.time_to_first_frame_ms = (frames[0].recv_s - run.connect_s) * MS
    rate = scenario.link.rate_mbit if scenario.link else None
    rtt = scenario.link.rtt_ms if scenario.link else None
    if samples.wire_start is not None and samples.wire_end is not None:
        wire = samples.wire_end - samples.wire_start
        row.wire_mbit = wire * BITS_PER_BYTE / stats.window_s / MBIT
        row.wire_bytes_per_frame = wire / stats.frames if stats.frames else None
    if scenario.is_step:
        rate = scenario.step_to_mbit
        row.step = _step_result(scenario, frames, t0, end, samples)
    if rate is not None and rtt is not None:
        # For the step scenario the targets apply to the post-step link.
        measured = row.step.after if row.step else asdict(stats)
        wire_bpf = row.step.wire_bytes_per_frame_after if row.step else row.wire_bytes_per_frame
        # Wire bytes per frame when known: permessage-deflate makes messages smaller on the wire.
        bpf = wire_bpf or measured["bytes_per_frame"]
        row.link_capacity_fps = link_capacity_fps(rate, bpf)
        row.latency_floor_ms = latency_floor_ms(rate, rtt, bpf)
        if row.link_capacity_fps:
            row.fps_vs_capacity = measured["fps"] / row.link_capacity_fps
        if row.latency_floor_ms and measured["latency_p50_ms"] is not None:
            row.p50_vs_floor = measured["latency_p50_ms"] / row.latency_floor_ms
    cpu0, cpu1 = samples.cpu_start, samples.cpu_end
    row.process_cpu_s = cpu1.process_cpu_s - cpu0.process_cpu_s
    row.producer_cpu_s = cpu1.producer_cpu_s - cpu0.producer_cpu_s
    row.serving_cpu_s = cpu1.serving_cpu_s - cpu0.serving_cpu_s
    row.rss_mb = cpu1.rss_bytes / MB
    if cpu0.frames_produced is not None and cpu1.frames_produced is not None:
        # Below 30 the source itself fell behind (CPU contention), not the link.
        row.source_fps = (cpu1.frames_produced - cpu0.frames_produced) / stats.window_s
    else:
        row.source_fps = id_rate_fps(frames, start, end)
    row.host_loadavg_1m = os.getloadavg()[0]
    row.latency_series = latency_series(frames, t0)


def _step_result(scenario: Scenario, frames: list[Any], t0: float, end: float, samples: Samples) -> StepResult:
    from bench.metrics import recovery_time_s

    assert scenario.link is not None and scenario.step_at_s is not None
    assert scenario.step_to_mbit is not None
    step_s = t0 + scenario.step_at_s
    before: FrameStats = summarize(frames, t0 + scenario.warmup_s, step_s)
    after: FrameStats = summarize(frames, step_s, end)
    wire_after = None
    if samples.wire_step is not None and samples.wire_end is not None and after.frames:
        wire_after = (samples.wire_end - samples.wire_step) / after.frames
    floor = latency_floor_ms(scenario.step_to_mbit, scenario.link.rtt_ms, wire_after or after.bytes_per_frame)
    threshold = None if floor is None else floor * RECOVERY_FLOOR_FACTOR
    recovery = None if threshold is None else recovery_time_s(frames, step_s, end, threshold)
    return StepResult(
        scenario.step_at_s,
        wire_after,
        scenario.link.rate_mbit,
        scenario.step_to_mbit,
        asdict(before),
        asdict(after),
        threshold,
        recovery,
    )


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
