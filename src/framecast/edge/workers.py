"""Edge worker processes on every core: SO_REUSEPORT sockets, one supervisor, metrics of all workers per scrape.

With `FRAMECAST_WORKERS` = N > 1 (0: one per CPU, the edge image's setting;
1, the default, under `make run` and in tests) the edge process becomes a supervisor that
starts N workers (`python -m framecast.edge` again, told its index through
`WORKER_ENV`). Each worker is a whole edge: its own uvicorn, listening socket
(SO_REUSEPORT on the same port: the kernel spreads connections), bus readers,
viewers, drain and `/readyz`. SIGTERM to the supervisor reaches every worker,
and each drains as a single edge does; a worker that dies is started again.

Metrics: each worker writes its exposition to a file in a shared folder once a
second; `/metrics` on any worker answers its own live families plus its
siblings' latest files, every sample labelled `worker="i"`, so one scrape has
all of them (sum over `worker` for the replica's totals; a sibling's figures
are at most ~1 s old).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger("framecast.edge.workers")

WORKER_ENV = "FRAMECAST_EDGE_WORKER"  # "index/count/metrics folder", set by the supervisor for its workers
RESTART_DELAY_S = 1.0
STOP_GRACE_S = 10.0  # a worker still running drain_timeout_s + this long after the stop signal is SIGKILLed
CRASH_LOOP_S, CRASH_LOOP_RESTARTS = 30.0, 5  # more restarts than this within this time: give up
_SNAPSHOT_SUFFIX = ".prom"


def cpu_count() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    return max(1, n)


def resolve_workers(setting: int) -> int:
    """`FRAMECAST_WORKERS`: 0 means one per CPU (what the edge image sets); the default is 1 (`make run`, tests)."""
    return setting if setting > 0 else cpu_count()


@dataclass(frozen=True)
class WorkerInfo:
    index: int
    count: int
    folder: Path

    @classmethod
    def from_env(cls) -> WorkerInfo | None:
        raw = os.environ.get(WORKER_ENV)
        if not raw:
            return None
        index, count, folder = raw.split("/", 2)
        return cls(int(index), int(count), Path(folder))

    def to_env(self) -> str:
        return f"{self.index}/{self.count}/{self.folder}"

    def snapshot_path(self, index: int | None = None) -> Path:
        return self.folder / f"worker-{self.index if index is None else index}{_SNAPSHOT_SUFFIX}"


def _snapshot_folder() -> Path:
    """A private folder for the workers' metrics snapshots: the temp dir, else /dev/shm (read-only root fs)."""
    for where in (None, "/dev/shm"):
        try:
            return Path(tempfile.mkdtemp(prefix="framecast-edge-", dir=where))
        except OSError:
            continue
    raise SystemExit("framecast-edge: FRAMECAST_WORKERS > 1 needs a writable temp dir (TMPDIR) for its metrics")


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound with SO_REUSEPORT (all workers bind the same port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


# --- metrics of all workers -------------------------------------------------------------------------------------
def write_snapshot(info: WorkerInfo, registry: CollectorRegistry) -> None:
    """This worker's exposition, for its siblings' scrapes (written whole, then renamed)."""
    path = info.snapshot_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(generate_latest(registry))
    tmp.replace(path)


def _labelled(families: Iterable[Metric], worker: int) -> Iterator[Metric]:
    for family in families:
        out = Metric(family.name, family.documentation, family.type, family.unit)
        for s in family.samples:
            out.add_sample(s.name, {**s.labels, "worker": str(worker)}, s.value, s.timestamp, s.exemplar)
        yield out


class AllWorkers(Collector):
    """One scrape of every worker: this one live, the others from their latest snapshots."""

    def __init__(self, info: WorkerInfo, registry: CollectorRegistry) -> None:
        self.info, self.registry = info, registry

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        sources: list[Iterable[Metric]] = [_labelled(self.registry.collect(), self.info.index)]
        for i in range(self.info.count):
            if i == self.info.index:
                continue
            try:
                text = self.info.snapshot_path(i).read_text()
            except OSError:
                continue  # not started yet, or restarting
            sources.append(_labelled(text_string_to_metric_families(text), i))
        for source in sources:
            for family in source:
                into = merged.get(family.name)
                if into is None:
                    merged[family.name] = family
                else:
                    into.samples.extend(family.samples)
        yield from merged.values()


def all_workers_exposition(info: WorkerInfo, registry: CollectorRegistry) -> bytes:
    combined = CollectorRegistry(auto_describe=False)
    combined.register(AllWorkers(info, registry))
    return generate_latest(combined)


# --- the supervisor ---------------------------------------------------------------------------------------------
class Supervisor:
    """Starts `count` workers of this same command line, restarts the ones that die, forwards SIGTERM/SIGINT."""

    def __init__(self, count: int, host: str, port: int, argv: list[str], *, stop_timeout_s: float = 30.0) -> None:
        self.count, self.argv, self.stop_timeout_s = count, argv, stop_timeout_s
        self.stop_deadline: float | None = None  # after a stop signal: workers still running then are killed
        self.folder = _snapshot_folder()
        # port 0: reserve one port for all workers (bound, never listening: the kernel gives it no connections)
        self.reserve = reuseport_socket(host, port)
        self.port = self.reserve.getsockname()[1]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.signals = 0

    def _spawn(self, index: int) -> None:
        env = {**os.environ, WORKER_ENV: WorkerInfo(index, self.count, self.folder).to_env(),
               "FRAMECAST_PORT": str(self.port)}
        self.procs[index] = subprocess.Popen([sys.executable, "-m", "framecast.edge", *self.argv, "--port",
                                              str(self.port)], env=env)

    def _signal(self, sig: int, frame: FrameType | None) -> None:
        self.stopping = True
        self.signals += 1
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.stop_timeout_s
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.send_signal(signal.SIGTERM if self.signals == 1 else signal.SIGINT)

    def _kill_stragglers(self) -> None:
        """A worker past its drain timeout and grace has hung in its shutdown: SIGKILL it (and say so)."""
        for i, p in self.procs.items():
            if p.poll() is None:
                log.error("edge worker %d still running %.0fs after the stop signal: killing it", i,
                          self.stop_timeout_s)
                with contextlib.suppress(OSError):
                    p.kill()

    def run(self) -> int:
        log.info("edge: %d workers on port %d", self.count, self.port)
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.count):
                self._spawn(i)
            restarts: list[float] = []
            while True:
                alive = False
                for i, p in list(self.procs.items()):
                    code = p.poll()
                    if code is None:
                        alive = True
                    elif not self.stopping:
                        restarts = [t for t in restarts if time.monotonic() - t < CRASH_LOOP_S] + [time.monotonic()]
                        if len(restarts) > CRASH_LOOP_RESTARTS:
                            log.error("edge workers keep exiting (last: worker %d, code %s): stopping", i, code)
                            self._signal(signal.SIGTERM, None)
                            continue
                        log.warning("edge worker %d exited with %s: starting it again", i, code)
                        time.sleep(RESTART_DELAY_S)
                        if not self.stopping:
                            self._spawn(i)
                            alive = True
                if not alive:
                    break
                if self.stop_deadline is not None and time.monotonic() > self.stop_deadline:
                    self._kill_stragglers()
                time.sleep(0.1)
            codes = [p.returncode for p in self.procs.values()]
            return max((c for c in codes if c is not None and c > 0), default=0)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            self.reserve.close()
            for f in self.folder.glob("*"):
                with contextlib.suppress(OSError):
                    f.unlink()
            with contextlib.suppress(OSError):
                self.folder.rmdir()
