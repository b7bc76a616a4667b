"""The systems under benchmark: how to start each one and read its counters.

A `RunningSystem` is a server process the harness started on the host side of
the link (or loopback), with a WebSocket path for the measuring client, CPU
readings from /proc, and, for the baselines, the per-frame capture times.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.timing import wait_until

from bench.constants import (
    BENCH_CLIENT_ID,
    CAPTURES_PATH,
    FRAMECAST,
    SEED_OPTIMIZED,
    SEED_ORIGINAL,
    SEED_WS_PATH,
    SERVER_READY_TIMEOUT_S,
    STATS_PATH,
    SystemName,
)
from bench.linkemu import stop_process
from bench.procstat import sample
from framecast.dev.embedded import free_port

HTTP_TIMEOUT_S = 2.0
READY_POLL_S = 0.1
BASELINE_MODULES: dict[str, str] = {
    SEED_ORIGINAL: "bench.baselines.seed_original",
    SEED_OPTIMIZED: "bench.baselines.seed_optimized",
}
FRAMECAST_REQUIRED_MODULES = ("framecast.protocol", "framecast.edge.__main__", "framecast.inference.__main__")


class SystemUnavailable(RuntimeError):
    """The system cannot run here yet (the message says why)."""


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds of the serving process, split from frame production if known."""

    process_cpu_s: float
    producer_cpu_s: float
    rss_bytes: int
    frames_produced: int | None = None

    @property
    def serving_cpu_s(self) -> float:
        return self.process_cpu_s - self.producer_cpu_s


@dataclass
class RunningSystem:
    """A started server; stop() is idempotent."""

    name: SystemName
    host: str
    port: int
    ws_path: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    has_bench_routes: bool = True
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.processes[-1].pid

    def http_url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def cpu(self) -> CpuReading:
        if self.has_bench_routes:
            stats = _get_json(self.http_url(STATS_PATH))
            return CpuReading(
                float(stats["process_cpu_s"]),
                float(stats["producer_cpu_s"]),
                int(stats["rss_bytes"]),
                int(stats["frames_produced"]),
            )
        proc = sample(self.pid)
        return CpuReading(proc.cpu_s, 0.0, proc.rss_bytes)

    def counters(self) -> dict[str, Any]:
        return _get_json(self.http_url(STATS_PATH)) if self.has_bench_routes else {}

    def captures(self, first_id: int, last_id: int) -> dict[int, float]:
        if not self.has_bench_routes:
            return {}
        raw = _get_json(self.http_url(f"{CAPTURES_PATH}?first={first_id}&last={last_id}"))
        return {int(k): float(v) for k, v in raw.items()}

    def stop(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)
        self.processes.clear()
        for cleanup in reversed(self.cleanups):
            cleanup()
        self.cleanups.clear()


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    def dead() -> str | None:
        return f"server exited with {proc.returncode}" if proc.poll() is not None else None

    try:
        wait_until(f"{url} answering", lambda: _get_json(url), SERVER_READY_TIMEOUT_S, interval=READY_POLL_S,
                   alive=dead)
    except (TimeoutError, RuntimeError) as exc:
        raise SystemUnavailable(f"{exc}; see {log_path}") from exc


def start_baseline(name: SystemName, host: str, log_path: Path) -> RunningSystem:
    """Start a seed baseline server on ``host`` and wait until it answers."""
    port = free_port(host)
    argv = [sys.executable, "-m", BASELINE_MODULES[name], "--host", host, "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=_repo_root())
    system = RunningSystem(name, host, port, SEED_WS_PATH.format(client_id=BENCH_CLIENT_ID), [proc])
    try:
        _wait_ready(system.http_url(STATS_PATH), proc, log_path)
    except BaseException:
        system.stop()
        raise
    return system


# --- FRAMECAST INTEGRATION ------------------------------------------------------
# start_framecast() starts, for one run: (1) an embedded Valkey
# (framecast.dev.embedded), (2) the inference service at 1280x720/30 fps whose
# "model" emits the bench scene (bench.framecast_scene_model, so all systems
# stream the same pictures), (3) one edge bound to ``host`` with its defaults.
# The RunningSystem's pid is the edge: CPU comes from /proc of the edge process,
# capture times from the wire header (u64 µs), so has_bench_routes=False.

FRAMECAST_STREAM = "demo"
FRAMECAST_WS_PATH = f"/ws/{FRAMECAST_STREAM}"
FRAMECAST_SCENE_MODEL = "bench.framecast_scene_model:factory"


def framecast_unavailable_reason() -> str | None:
    """Why framecast cannot be benchmarked yet, or None when it can."""
    missing = [m for m in FRAMECAST_REQUIRED_MODULES if not _module_exists(m)]
    if missing:
        return f"framecast not available yet: missing {', '.join(missing)}"
    return None


def start_framecast(host: str, log_path: Path) -> RunningSystem:
    """Start Valkey + inference + edge for one run (tests/support's stack launcher) and wait until the edge
    lists the stream as live (it closes viewers of unknown streams with 4004). Logs: the folder `log_path`
    names without its suffix."""
    reason = framecast_unavailable_reason()
    if reason:
        raise SystemUnavailable(reason)
    from tests.support.stack import Stack

    from framecast.dev.embedded import EmbeddedRedis

    log_dir = log_path.with_suffix("")
    redis_server = EmbeddedRedis().start()
    stack = Stack(redis_server, log_dir, inference_args=["--model", FRAMECAST_SCENE_MODEL, "--metrics-port", "0"],
                  host=host, stream=FRAMECAST_STREAM)
    system = RunningSystem(FRAMECAST, host, 0, FRAMECAST_WS_PATH, has_bench_routes=False)
    system.cleanups.append(redis_server.stop)
    try:
        stack.start(live=True, timeout=SERVER_READY_TIMEOUT_S)
    except (TimeoutError, RuntimeError) as exc:
        stack.stop()
        system.stop()
        raise SystemUnavailable(f"{exc}; see {log_dir}") from exc
    except BaseException:
        stack.stop()
        system.stop()
        raise
    assert stack.inference is not None and stack.inference.proc is not None
    assert stack.edge is not None and stack.edge.proc is not None
    system.port = stack.port
    system.processes += [stack.inference.proc, stack.edge.proc]  # the last one is the edge (its pid, its CPU)
    return system


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def start_system(name: SystemName, host: str, log_path: Path) -> RunningSystem:
    if name == FRAMECAST:
        return start_framecast(host, log_path)
    return start_baseline(name, host, log_path)


def unavailable_reason(name: SystemName) -> str | None:
    return framecast_unavailable_reason() if name == FRAMECAST else None


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
