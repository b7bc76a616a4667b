"""Real service processes for tests and benches: start, wait ready (poll with a deadline), stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from framecast import constants as C
from framecast.dev.embedded import free_port
from tests.support.metrics import scrape
from tests.support.timing import scaled, wait_until

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Service:
    """One process of a stack (a framecast service, or any binary with `python=False`), in its own session;
    its output goes to `<log_dir>/<name>.log`, shown when a test fails."""

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    python: bool = True  # args are `python -X ...` arguments (this interpreter); else a whole argv
    log_dir: Path | None = None  # where start() writes the log when it is not given one
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, log_dir: Path | None = None) -> Service:
        self.log_dir = log_dir or self.log_dir
        assert self.log_dir is not None, f"{self.name}: no log directory"
        self.log_path = self.log_dir / f"{self.name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        argv = [sys.executable, *self.args] if self.python else self.args
        with open(self.log_path, "ab") as log:  # appended: a restart on the same name keeps the first run's log
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                         start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def dead(self) -> str | None:
        """Why waiting on this process is pointless (it exited), or None while it runs."""
        if self.proc is not None and self.proc.poll() is not None:
            return f"{self.name} exited with {self.proc.returncode}; log tail:\n{self.log_tail()}"
        return None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def terminate(self) -> None:
        """SIGTERM without waiting: the service drains and exits by itself."""
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.signal(signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.proc.wait()


def http_ok(url: str, status: int = 200) -> bool:
    """Whether `url` answers `status` now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == status)
    except urllib.error.HTTPError as exc:
        return exc.code == status
    except OSError:
        return False


def wait_http(url: str, timeout: float = 30.0, service: Service | None = None, status: int = 200) -> None:
    """Poll `url` until it answers `status`, failing early if `service` died."""
    wait_until(f"{url} answering {status}", lambda: http_ok(url, status), timeout,
               alive=service.dead if service is not None else None)


def stream_live(base: str, stream: str = C.DEFAULT_STREAM) -> bool:
    """Whether the edge at `base` lists `stream` as live (its inference service is publishing)."""
    try:
        with urllib.request.urlopen(base + "/streams", timeout=2) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    streams = body.get("streams", []) if isinstance(body, dict) else []
    return any(s.get("stream") == stream and s.get("live") for s in streams)


def wait_stream_live(base: str, *services: Service, stream: str = C.DEFAULT_STREAM, timeout: float = 120.0) -> None:
    """Poll the edge's /streams until `stream` is live, failing early if one of `services` died."""

    def dead() -> str | None:
        return next((why for s in services if (why := s.dead()) is not None), None)

    wait_until(f"stream {stream!r} live at {base}", lambda: stream_live(base, stream), timeout, interval=0.1,
               alive=dead)


def inference_service(redis_url: str, *extra: str, stream: str = "demo") -> Service:
    return Service(f"inference-{stream}", ["-m", "framecast.inference", "--redis-url", redis_url, "--stream", stream,
                                           "--metrics-port", str(free_port()), *extra])


def edge_service(redis_url: str, *extra: str, port: int = 0, name: str = "edge", host: str = "") -> Service:
    """`python -m framecast.edge` on `port` (a free one by default); `host`: the address it binds (its default
    when empty)."""
    port = port or free_port(host or "127.0.0.1")
    bind = ["--host", host] if host else []
    svc = Service(name, ["-m", "framecast.edge", "--redis-url", redis_url, *bind, "--port", str(port), *extra])
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


@dataclass
class EdgeProcess:
    """A real `python -m framecast.edge` on a free port (tests/support's Service), quiet and without a drain delay."""

    redis_url: str
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    service: Service | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.service.proc if self.service is not None else None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, stream: str = "demo") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{stream}"

    def start(self, tmp_dir: str = "/tmp") -> EdgeProcess:
        svc = edge_service(self.redis_url, "--log-level", "warning", "--drain-delay-s", "0", *self.extra,
                           port=self.port)
        self.port = service_port(svc)
        svc.name = f"edge-{self.port}"
        svc.env.update(self.env)
        self.service = svc.start(Path(tmp_dir))
        wait_http(self.base + "/healthz", 20, svc)
        return self

    def log(self) -> str:
        return self.service.log()[-4000:] if self.service is not None else ""

    def stop(self, timeout: float = 15) -> int | None:
        return self.service.stop(timeout) if self.service is not None else None

    def metrics(self) -> str:
        return scrape(self.base)
