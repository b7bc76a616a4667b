"""Real service processes for integration tests: start, wait ready (poll with a deadline), stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.timing import scaled

from framecast.embedded import free_port

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Service:
    """One service process; its output goes to a log file shown when a test fails."""

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, log_dir: Path) -> Service:
        self.log_path = log_dir / f"{self.name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, *self.args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=REPO, start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.proc.wait()


def wait_http(url: str, timeout: float = 30.0, service: Service | None = None, status: int = 200) -> None:
    """Poll `url` until it answers `status`, failing early if `service` died."""
    deadline = time.monotonic() + scaled(timeout)
    last: object = None
    while time.monotonic() < deadline:
        if service is not None and not service.alive():
            raise AssertionError(f"{service.name} exited early:\n{service.log()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == status:
                    return
                last = resp.status
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready after {timeout}s (last: {last})"
                         + (f"\n{service.log()[-3000:]}" if service else ""))


def inference_service(redis_url: str, *extra: str, stream: str = "demo") -> Service:
    return Service(f"inference-{stream}", ["-m", "framecast.inference", "--redis-url", redis_url, "--stream", stream,
                                           "--metrics-port", str(free_port()), *extra])


def edge_service(redis_url: str, *extra: str, port: int = 0, name: str = "edge") -> Service:
    port = port or free_port()
    svc = Service(name, ["-m", "framecast.edge", "--redis-url", redis_url, "--port", str(port), *extra])
    svc.env["FRAMECAST_TEST_PORT"] = str(port)
    return svc


def service_port(svc: Service) -> int:
    return int(svc.env["FRAMECAST_TEST_PORT"])


@contextlib.contextmanager
def running(*services: Service, log_dir: Path) -> Iterator[tuple[Service, ...]]:
    started: list[Service] = []
    try:
        for s in services:
            started.append(s.start(log_dir))
        yield services
    finally:
        for s in reversed(started):
            s.stop()
