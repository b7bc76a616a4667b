"""The systems under benchmark: how to start each one and read its counters.

A `RunningSystem` is a server process the harness started on the host side of
the link (or loopback), with a WebSocket path for the measuring client, CPU
readings from /proc, and, for the baselines, the per-frame capture times.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def free_port(host: str) -> int:
    """A port free on ``host`` now (the server binds it right after)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemUnavailable(f"server exited with {proc.returncode}; see {log_path}")
        try:
            _get_json(url)
            return
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(READY_POLL_S)
    raise SystemUnavailable(f"server not ready after {SERVER_READY_TIMEOUT_S:g}s; see {log_path}")


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
# (framecast.embedded), (2) the inference service at 1280x720/30 fps whose
# "model" emits the bench scene (bench.framecast_scene_model, so all systems
# stream the same pictures), (3) one edge bound to ``host`` with its defaults.
# The RunningSystem's pid is the edge: CPU comes from /proc of the edge process,
# capture times from the wire header (u64 µs), so has_bench_routes=False.

FRAMECAST_STREAM = "demo"
FRAMECAST_WS_PATH = f"/ws/{FRAMECAST_STREAM}"
FRAMECAST_READY_PATH = "/readyz"
FRAMECAST_STREAMS_PATH = "/streams"
FRAMECAST_REDIS_ENV = "FRAMECAST_REDIS_URL"
FRAMECAST_SCENE_MODEL = "bench.framecast_scene_model:factory"


def framecast_unavailable_reason() -> str | None:
    """Why framecast cannot be benchmarked yet, or None when it can."""
    missing = [m for m in FRAMECAST_REQUIRED_MODULES if not _module_exists(m)]
    if missing:
        return f"framecast not available yet: missing {', '.join(missing)}"
    return None


def start_framecast(host: str, log_path: Path) -> RunningSystem:
    """Start Valkey + inference + edge for one run and wait until the edge is ready."""
    reason = framecast_unavailable_reason()
    if reason:
        raise SystemUnavailable(reason)
    from framecast.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis().start()
    env = {**os.environ, FRAMECAST_REDIS_ENV: redis_server.url}
    port = free_port(host)
    inference_argv = [
        sys.executable, "-m", "framecast.inference", "--stream", FRAMECAST_STREAM,
        "--model", FRAMECAST_SCENE_MODEL, "--metrics-port", "0",
    ]  # fmt: skip
    edge_argv = [sys.executable, "-m", "framecast.edge", "--host", host, "--port", str(port)]
    system = RunningSystem(FRAMECAST, host, port, FRAMECAST_WS_PATH, has_bench_routes=False)
    system.cleanups.append(redis_server.stop)
    try:
        with log_path.open("wb") as log:
            for argv in (inference_argv, edge_argv):
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=_repo_root(), env=env)
                system.processes.append(proc)
        _wait_ready(system.http_url(FRAMECAST_READY_PATH), system.processes[-1], log_path)
        _wait_stream_live(system, log_path)
    except BaseException:
        system.stop()
        raise
    return system


def _stream_live(listing: dict[str, Any]) -> bool:
    """Whether the edge's /streams listing shows the bench stream as live."""
    streams = listing.get("streams", [])
    return any(s.get("stream") == FRAMECAST_STREAM and s.get("live") for s in streams)


def _wait_stream_live(system: RunningSystem, log_path: Path) -> None:
    """The edge closes viewers of unknown streams (4004): wait for the first publish."""
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        exited = [p.args for p in system.processes if p.poll() is not None]
        if exited:
            raise SystemUnavailable(f"framecast process exited: {exited}; see {log_path}")
        try:
            if _stream_live(_get_json(system.http_url(FRAMECAST_STREAMS_PATH))):
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(READY_POLL_S)
    raise SystemUnavailable(f"stream {FRAMECAST_STREAM!r} not live after {SERVER_READY_TIMEOUT_S:g}s; see {log_path}")


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
