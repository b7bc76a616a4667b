"""Helpers of the reliability tests: a recording viewer, process probes, metrics, a freezable TCP relay.

Everything here talks to real processes over loopback; nothing waits with a
bare sleep for readiness (`eventually` polls against a deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from framecast.protocol import Ack, ClientHello, decode_header, encode_control
from framecast.provenance import provenance
from tests.support.timing import scaled, wait_until_async, wall_us
from tests.support.viewer import open_viewer

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "tests" / "artifacts" / "reliability.json"
# committed records, one JSON per record: docs/reliability.md's measured tables are generated from them
RESULTS_DIR = REPO / "bench" / "results" / "reliability"
RECORD_RESULTS_ENV = "FRAMECAST_RECORD_RESULTS"  # "1": a passing test also writes its records to RESULTS_DIR

# a light stream for a 2-core machine shared with other work: small frames, two tiers
STREAM_ARGS = ["--width", "320", "--height", "180", "--fps", "15", "--tiers", "high=320x180@80,low=160x90@60",
               "--torch-threads", "1", "--encode-threads", "1", "--log-level", "warning"]
STREAM_FPS = 15.0

_pending: dict[str, list[dict[str, Any]]] = {}  # test node id -> its records, written once the test passed


def record(test: str, **figures: Any) -> None:
    """Add measured figures to tests/artifacts/reliability.json, with their provenance.

    With FRAMECAST_RECORD_RESULTS=1 the record is also kept for bench/results/reliability/<test>.json, written
    when the test passes (a failing run's figures never reach the docs); then `python -m bench.report`
    regenerates docs/reliability.md's tables from those files.
    """
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(ARTIFACT.read_text())
    except (OSError, ValueError):
        data = {}
    node = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    prov = provenance(f"pytest {node}" if node else None)  # date, commit, machine, command
    data[test] = {**figures, "at": prov["date"], "provenance": prov}
    ARTIFACT.write_text(json.dumps(data, indent=2, sort_keys=True))
    if os.environ.get(RECORD_RESULTS_ENV) == "1":
        _pending.setdefault(node, []).append({"test": test, "figures": figures, "provenance": prov})
    print(f"[reliability] {test}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def write_results(node: str, passed: bool) -> list[Path]:
    """Write the records a test made (FRAMECAST_RECORD_RESULTS=1) to RESULTS_DIR if it passed; else drop them."""
    documents = _pending.pop(node, [])
    written = []
    for document in documents if passed else []:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{document['test']}.json"
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


# --- waiting ---------------------------------------------------------------------------------------


def http_status(url: str, timeout: float = 2.0) -> int:
    """HTTP status of a GET (0 when nothing answered)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def http_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())


# --- process probes (Linux /proc) -----------------------------------------------------------------


@dataclass(frozen=True)
class ProcStats:
    rss_bytes: int
    fds: int
    threads: int


def proc_stats(pid: int) -> ProcStats:
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return ProcStats(rss, len(os.listdir(f"/proc/{pid}/fd")), threads)


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t seconds, value) samples, per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    return 60.0 * sum((t - mt) * (v - mv) for t, v in samples) / var


# --- a recording viewer ---------------------------------------------------------------------------


@dataclass(slots=True)
class Seen:
    frame_id: int
    capture_us: int
    tier: int
    recv_mono: float
    recv_wall_us: int
    nbytes: int


@dataclass
class Viewer:
    """A real WebSocket viewer on one connection: hello, an ack per frame, everything it saw recorded."""

    url: str
    ack: bool = True
    hello: ClientHello | None = field(default_factory=ClientHello)
    headers: dict[str, str] | None = None
    subprotocols: list[str] | None = None
    origin: str | None = None
    local_host: str | None = None
    frames: list[Seen] = field(default_factory=list)
    controls: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    close_mono: float | None = None
    error: str = ""
    connects: int = 0
    keep_frames: bool = True  # False: only the counters below (long soaks)
    n_frames: int = 0
    last_frame_id: int = -1
    out_of_order: int = 0
    task: asyncio.Task[None] | None = None
    ws: ClientConnection | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> Viewer:
        self.task = asyncio.create_task(self.run())
        return self

    async def stop(self) -> Viewer:
        self._stop.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, scaled(10))
        return self

    @property
    def closed(self) -> bool:
        return self.close_code is not None or bool(self.error)

    def statuses(self) -> list[str]:
        return [c["state"] for _, c in self.controls if c.get("type") == "status"]

    def server(self) -> str:
        for _, c in self.controls:
            if c.get("type") == "hello":
                return str(c.get("server", ""))
        return ""

    def frames_after(self, mono: float) -> list[Seen]:
        return [f for f in self.frames if f.recv_mono >= mono]

    def fps(self, t0: float, t1: float) -> float:
        n = sum(1 for f in self.frames if t0 <= f.recv_mono < t1)
        return n / max(1e-6, t1 - t0)

    async def run(self) -> None:
        try:
            async with open_viewer(self.url, open_timeout=15, headers=self.headers, subprotocols=self.subprotocols,
                                   origin=self.origin, local_host=self.local_host, max_size=1 << 24,
                                   ping_interval=None, close_timeout=2) as ws:
                self.ws = ws
                self.connects += 1
                if self.hello is not None:
                    await ws.send(encode_control(self.hello))
                stop = asyncio.create_task(self._stop.wait())
                try:
                    while True:
                        recv = asyncio.ensure_future(ws.recv())
                        done, _ = await asyncio.wait({recv, stop}, return_when=asyncio.FIRST_COMPLETED)
                        if recv not in done:
                            recv.cancel()
                            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                                await recv
                            return
                        msg = recv.result()
                        now = time.monotonic()
                        if isinstance(msg, str):
                            self.controls.append((now, json.loads(msg)))
                            continue
                        h = decode_header(msg)
                        self.n_frames += 1
                        if h.frame_id <= self.last_frame_id:
                            self.out_of_order += 1
                        self.last_frame_id = h.frame_id
                        if self.keep_frames:
                            self.frames.append(Seen(h.frame_id, h.capture_us, h.tier, now, wall_us(),
                                                    len(msg)))
                        if self.ack:
                            await ws.send(encode_control(Ack(h.frame_id)))
                finally:
                    stop.cancel()
        except ConnectionClosed as exc:
            self.close_mono = time.monotonic()
            self.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
            self.close_reason = exc.rcvd.reason if exc.rcvd is not None else ""
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            self.close_mono = time.monotonic()
            self.error = f"{type(exc).__name__}: {exc}"


async def run_viewers(viewers: list[Viewer], spacing: float = 0.0) -> None:
    for v in viewers:
        v.start()
        if spacing:
            await asyncio.sleep(spacing)  # spread handshakes (load shaping, not a readiness wait)


async def stop_viewers(viewers: list[Viewer]) -> None:
    await asyncio.gather(*(v.stop() for v in viewers))


async def wait_stream(url: str, within: float = 60.0, hello: ClientHello | None = None) -> None:
    """Poll until the edge admits a viewer of the stream and it gets a frame (inference announced it)."""
    deadline = time.monotonic() + scaled(within)
    last = ""
    while time.monotonic() < deadline:
        v = Viewer(url, hello=hello or ClientHello())
        v.start()
        try:
            await wait_until_async("first frame or close", lambda: bool(v.frames) or v.closed, 15)  # noqa: B023
        except TimeoutError:
            last = "no frame within 15 s"
        await v.stop()
        if v.frames:
            return
        last = f"close {v.close_code} {v.close_reason} {v.error}"
        await asyncio.sleep(0.2)  # retry pacing while the stream is being announced
    raise AssertionError(f"stream never delivered a frame at {url}: {last}")


# --- raw sockets for misbehaving viewers ----------------------------------------------------------


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST, as a crashed client or a dropped NAT entry would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FreezeRelay:
    """A TCP relay on loopback between viewers and the edge; `freeze()` stops it forwarding (and reading).

    A frozen relay is what a viewer behind a dead Wi-Fi link or a hung NAT looks like to the edge: the
    connection stays open, nothing is acknowledged, the edge's send buffer fills.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.frozen = asyncio.Event()
        self.upstream_ports: list[int] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> FreezeRelay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def freeze(self) -> None:
        self.frozen.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        # tiny buffers on the relay's edge-side socket so a freeze shows up at the edge at once
        sock = up_writer.get_extra_info("socket")
        self.upstream_ports.append(sock.getsockname()[1])
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while not self.frozen.is_set():
                read = asyncio.ensure_future(src.read(65536))
                frozen = asyncio.ensure_future(self.frozen.wait())
                done, _ = await asyncio.wait({read, frozen}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    return  # frozen: stop reading and writing, keep the sockets open
                frozen.cancel()
                data = read.result()
                if not data:
                    dst.close()
                    return
                dst.write(data)
                await dst.drain()

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()


async def gather_bounded(coros: list[Callable[[], Awaitable[None]]], concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(fn: Callable[[], Awaitable[None]]) -> None:
        async with sem:
            await fn()

    await asyncio.gather(*(one(c) for c in coros))
