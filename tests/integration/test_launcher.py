"""The launcher behind `make run`, as a user sees it: the URLs appear once the stream is live, and killing the
launcher itself (SIGKILL, as when its terminal dies) leaves no process behind.

Real processes throughout: the launcher starts an embedded Valkey, `python -m framecast.inference` (torch on
the CPU) and `python -m framecast.edge`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from framecast.dev.embedded import free_port
from tests.support.procs import REPO
from tests.support.timing import scaled

LIGHT = {"FRAMECAST_WIDTH": "320", "FRAMECAST_HEIGHT": "180", "FRAMECAST_FPS": "15",
         "FRAMECAST_TIERS": "high=320x180@80,low=160x90@60", "FRAMECAST_TORCH_THREADS": "1",
         "FRAMECAST_ENCODE_THREADS": "1"}


def _live(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/streams", timeout=2) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    return any(s.get("stream") == "demo" and s.get("live") for s in body.get("streams", []))


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_launcher_prints_urls_once_live_and_its_children_die_with_it(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "FRAMECAST_REDIS_URL"} | LIGHT | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "framecast.dev.launcher", "--edge-port", str(port),
                             "--inference-metrics-port", str(metrics_port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    printed = threading.Event()
    live_when_printed: list[bool] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if f"{base}/?stream=" in line and not printed.is_set():
                live_when_printed.append(_live(base))  # right when the user reads the URL
                printed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    tree: list[psutil.Process] = []
    try:
        printed.wait(scaled(120))
        tree = psutil.Process(proc.pid).children(recursive=True)  # first: the finally below stops them all
        assert printed.is_set(), "no viewer URL within 120 s:\n" + "".join(lines)[-3000:]
        assert live_when_printed == [True], "the URL was printed before the stream was live:\n" + "".join(lines)
        names = " ".join(" ".join(p.cmdline()) for p in tree)
        assert "framecast.inference" in names and "framecast.edge" in names and "valkey-server" in names, names

        proc.kill()  # SIGKILL: no handler runs, no cleanup in the launcher
        proc.wait(scaled(10))
        deadline = time.monotonic() + scaled(20)
        while _alive(tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = _alive(tree)
        assert not survivors, f"orphans left: {[p.cmdline() for p in survivors]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _alive(tree):  # only processes this test's launcher started
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                p.kill()
        reader.join(5)
