"""Fan-out ceiling: one shared payload sent to N raw TCP readers.

A minimal asyncio server (own process) waits for N readers, then for a bounded
time sends the same 50 KB ``bytes`` object to every reader whose transport
buffer has room, yielding to the event loop between frames (a sender that
never yields starves ``accept``).  Readers (another process) count the bytes
they receive.  Result: deliveries per second and per server CPU-second
(``time.process_time()`` of the server over the send window).

Run: ``python -m bench.fanout serve --port P --readers N --duration S`` and
``python -m bench.fanout read --port P --readers N``; both print one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.constants import FANOUT_PAYLOAD_BYTES
from bench.linkemu import read_line, stop_process
from bench.procstat import sample

HOST = "127.0.0.1"
LENGTH_PREFIX = struct.Struct("!I")
ACCEPT_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 60.0
# Skip a reader for this frame while its transport still holds a frame.
HIGH_WATER_BYTES = FANOUT_PAYLOAD_BYTES


@dataclass(frozen=True)
class ServerReport:
    """What the sender did during its window."""

    readers: int
    sends: int
    skipped_full: int
    frames: int
    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class ReaderReport:
    """What the readers received in total."""

    readers: int
    bytes_received: int
    deliveries: int
    connected: int
    errors: dict[str, int] = field(default_factory=dict)


def deliveries_per_cpu_s(deliveries: int, cpu_s: float) -> float | None:
    return deliveries / cpu_s if cpu_s > 0 else None


async def serve(port: int, readers: int, duration_s: float) -> ServerReport:
    transports: list[asyncio.Transport] = []
    all_connected = asyncio.Event()

    class _Sender(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transports.append(transport)
            if len(transports) >= readers:
                all_connected.set()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Sender, HOST, port)
    print(json.dumps({"listening": server.sockets[0].getsockname()[1]}), flush=True)
    async with asyncio.timeout(ACCEPT_TIMEOUT_S):
        await all_connected.wait()
    message = LENGTH_PREFIX.pack(FANOUT_PAYLOAD_BYTES) + bytes(FANOUT_PAYLOAD_BYTES)
    sends = skipped = frames = 0
    cpu0, wall0 = time.process_time(), time.monotonic()
    deadline = wall0 + duration_s
    while time.monotonic() < deadline:
        for transport in transports:
            if transport.get_write_buffer_size() < HIGH_WATER_BYTES:
                transport.write(message)
                sends += 1
            else:
                skipped += 1
        frames += 1
        await asyncio.sleep(0)  # yield: let accept() and socket writes run
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    for transport in transports:
        transport.close()
    server.close()
    return ServerReport(readers, sends, skipped, frames, wall, cpu)


async def read(port: int, readers: int) -> ReaderReport:
    loop = asyncio.get_running_loop()
    received = [0]
    closed: list[asyncio.Future[None]] = []

    class _Reader(asyncio.Protocol):
        def __init__(self) -> None:
            self.done: asyncio.Future[None] = loop.create_future()
            closed.append(self.done)

        def data_received(self, data: bytes) -> None:
            received[0] += len(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                self.done.set_result(None)

    connected = 0
    for _ in range(readers):
        await loop.create_connection(_Reader, HOST, port)
        connected += 1
    async with asyncio.timeout(READ_TIMEOUT_S):
        await asyncio.gather(*closed)
    frame_bytes = LENGTH_PREFIX.size + FANOUT_PAYLOAD_BYTES
    return ReaderReport(readers, received[0], received[0] // frame_bytes, connected)


@dataclass(frozen=True)
class FanoutResult:
    """One fan-out measurement row (every field present; None when skipped)."""

    target: str
    readers: int
    status: str
    reason: str
    duration_s: float
    deliveries: int | None
    deliveries_per_s: float | None
    server_cpu_s: float | None
    deliveries_per_cpu_s: float | None
    sends: int | None
    skipped_full: int | None
    rss_before_mb: float | None = None
    rss_per_viewer_kb: float | None = None
    redis_used_memory_mb: float | None = None


RAW_TARGET = "raw-asyncio-tcp"
FRAMECAST_EDGE_TARGET = "framecast-edge"
STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
STATUS_ERROR = "error"
PROCESS_GRACE_S = 30.0


def skipped_result(target: str, readers: int, duration_s: float, reason: str, status: str) -> FanoutResult:
    return FanoutResult(target, readers, status, reason, duration_s, None, None, None, None, None, None)


def _json_line(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError(f"no JSON report in output: {text[-300:]!r}")
    obj: dict[str, Any] = json.loads(lines[-1])
    return obj


def run_raw_fanout(readers: int, duration_s: float) -> FanoutResult:
    """Measure the raw-socket ceiling with ``readers`` readers for ``duration_s``."""
    serve_argv = [sys.executable, "-m", __name__, "serve", "--readers", str(readers),
                  "--duration", f"{duration_s:g}"]  # fmt: skip
    server = subprocess.Popen(serve_argv, stdout=subprocess.PIPE, text=True, cwd=_repo_root())
    try:
        port = int(json.loads(read_line(server, PROCESS_GRACE_S))["listening"])
        read_argv = [sys.executable, "-m", __name__, "read", "--port", str(port),
                     "--readers", str(readers)]  # fmt: skip
        reader = subprocess.run(
            read_argv, capture_output=True, text=True, timeout=duration_s + PROCESS_GRACE_S,
            cwd=_repo_root(),
        )  # fmt: skip
        out, _ = server.communicate(timeout=PROCESS_GRACE_S)
        sent = ServerReport(**_json_line(out))
        got = ReaderReport(**_json_line(reader.stdout))
    except (OSError, ValueError, TypeError, KeyError, subprocess.TimeoutExpired) as exc:
        return skipped_result(RAW_TARGET, readers, duration_s, repr(exc), STATUS_ERROR)
    finally:
        stop_process(server)
    return FanoutResult(
        RAW_TARGET, readers, STATUS_OK, "", sent.wall_s, got.deliveries,
        got.deliveries / sent.wall_s, sent.cpu_s, deliveries_per_cpu_s(got.deliveries, sent.cpu_s),
        sent.sends, sent.skipped_full,
    )  # fmt: skip


# --- FRAMECAST INTEGRATION ------------------------------------------------------
# The same measurement against the framecast edge: an embedded Valkey, one edge
# (defaults, except --viewers-per-ip 0 so that N loopback viewers are allowed),
# a publisher thread XADDing one shared 50 KB frame at EDGE_PUBLISH_FPS, and N
# acking WebSocket viewers in another process.  Deliveries are frames the
# viewers received; CPU is the edge process's (from /proc) over their window.

MB = 1e6
KB = 1e3
EDGE_STREAM = "fanout"
EDGE_TIER = "high"
EDGE_PUBLISH_FPS = 30.0
EDGE_MAXLEN = 60
EDGE_HEARTBEAT_S = 1.0
EDGE_READY_TIMEOUT_S = 30.0
EDGE_WINDOW_START = "WINDOW_START"
EDGE_FRAME_SIZE = (1280, 720)
EDGE_QUALITY = 85


def _edge_frame(frame_id: int) -> bytes:
    from framecast import protocol

    width, height = EDGE_FRAME_SIZE
    header = protocol.FrameHeader(frame_id, time.time_ns() // 1000, width, height, quality=EDGE_QUALITY)
    return protocol.encode_frame(header, _PAYLOAD)


_PAYLOAD = bytes(FANOUT_PAYLOAD_BYTES)


def _publish(redis_url: str, stop: threading.Event) -> None:
    """Publish the shared payload as a framecast stream until ``stop`` is set."""
    from framecast import bus

    client = bus.sync_client(redis_url)
    publisher = bus.BusPublisher(client, EDGE_STREAM, keys=bus.Keys(), maxlen=EDGE_MAXLEN)
    width, height = EDGE_FRAME_SIZE
    tier = {"name": EDGE_TIER, "width": width, "height": height, "quality": EDGE_QUALITY, "codec": "jpeg"}
    info = bus.StreamInfo(EDGE_STREAM, [tier], EDGE_PUBLISH_FPS, model="bench-fanout", source="bench")
    frame_id, next_heartbeat = 1, 0.0
    period = 1.0 / EDGE_PUBLISH_FPS
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_heartbeat:
            publisher.heartbeat(info)
            next_heartbeat = now + EDGE_HEARTBEAT_S
        publisher.publish({EDGE_TIER: _edge_frame(frame_id)}, time.time_ns() // 1000)
        frame_id += 1
        stop.wait(max(0.0, period - (time.monotonic() - now)))
    client.close()


def _redis_used_memory(redis_url: str) -> int:
    """Valkey's used_memory after the run: bounded by MAXLEN x frame size, whatever the viewers do."""
    from framecast import bus

    client = bus.sync_client(redis_url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def _wait_live(base_url: str, deadline: float) -> None:
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/streams", timeout=2) as response:
                listing = json.loads(response.read())
            if any(s.get("stream") == EDGE_STREAM and s.get("live") for s in listing.get("streams", [])):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"edge did not list stream {EDGE_STREAM!r} as live")


def run_framecast_fanout(readers: int, duration_s: float) -> FanoutResult:
    """Deliveries per edge CPU-second with ``readers`` acking viewers for ``duration_s``."""
    from bench.systems import framecast_unavailable_reason, free_port

    reason = framecast_unavailable_reason()
    if reason:
        return skipped_result(FRAMECAST_EDGE_TARGET, readers, duration_s, reason, STATUS_SKIPPED)
    from framecast.embedded import EmbeddedRedis

    stop = threading.Event()
    procs: list[subprocess.Popen[str]] = []
    redis_server = EmbeddedRedis().start()
    publisher = threading.Thread(target=_publish, args=(redis_server.url, stop), daemon=True)
    try:
        port = free_port(HOST)
        env = {**os.environ, "FRAMECAST_REDIS_URL": redis_server.url}
        edge_argv = [sys.executable, "-m", "framecast.edge", "--host", HOST, "--port", str(port),
                     "--viewers-per-ip", "0"]  # fmt: skip
        edge = subprocess.Popen(edge_argv, env=env, cwd=_repo_root(), text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(edge)
        publisher.start()
        _wait_live(f"http://{HOST}:{port}", time.monotonic() + EDGE_READY_TIMEOUT_S)
        read_argv = [sys.executable, "-m", __name__, "ws-read", "--port", str(port), "--readers", str(readers),
                     "--duration", f"{duration_s:g}"]  # fmt: skip
        rss_before = sample(edge.pid).rss_bytes
        viewers = subprocess.Popen(read_argv, cwd=_repo_root(), text=True, stdout=subprocess.PIPE)
        procs.append(viewers)
        if read_line(viewers, ACCEPT_TIMEOUT_S + PROCESS_GRACE_S).strip() != EDGE_WINDOW_START:
            raise ValueError("viewers did not connect")
        at_start = sample(edge.pid)
        cpu0, wall0 = at_start.cpu_s, time.monotonic()
        out, _ = viewers.communicate(timeout=duration_s + PROCESS_GRACE_S)
        cpu, wall = sample(edge.pid).cpu_s - cpu0, time.monotonic() - wall0
        got = ReaderReport(**_json_line(out))
        redis_memory = _redis_used_memory(redis_server.url)
    except (OSError, ValueError, TypeError, KeyError, TimeoutError, subprocess.TimeoutExpired) as exc:
        return skipped_result(FRAMECAST_EDGE_TARGET, readers, duration_s, repr(exc), STATUS_ERROR)
    finally:
        stop.set()
        for proc in reversed(procs):
            stop_process(proc)
        publisher.join(EDGE_HEARTBEAT_S * 2)
        redis_server.stop()
    return FanoutResult(
        FRAMECAST_EDGE_TARGET, readers, STATUS_OK if got.connected else STATUS_ERROR,
        "" if got.connected == readers else f"{got.connected} of {readers} viewers live: {got.errors}",
        wall, got.deliveries, got.deliveries / wall, cpu, deliveries_per_cpu_s(got.deliveries, cpu), None, None,
        rss_before / MB, (at_start.rss_bytes - rss_before) / max(got.connected, 1) / KB, redis_memory / MB,
    )  # fmt: skip


async def ws_read(port: int, readers: int, duration_s: float) -> ReaderReport:
    """N acking framecast viewers.  Prints EDGE_WINDOW_START once every viewer has a
    first frame (or ACCEPT_TIMEOUT_S passed), counts frames for ``duration_s``, and
    reports how many viewers were live in the window and why the others failed."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from framecast import protocol

    url = f"ws://{HOST}:{port}/ws/{EDGE_STREAM}"
    counts = [0] * readers
    received = [0]
    first = [asyncio.Event() for _ in range(readers)]
    stop = asyncio.Event()
    errors: collections.Counter[str] = collections.Counter()

    async def viewer(index: int) -> None:
        hello = protocol.encode_control(protocol.ClientHello(client_id=f"fanout-{index}", tier=EDGE_TIER))
        try:
            async with connect(url, compression=None, max_size=None, ping_interval=None) as ws:
                await ws.send(hello)
                while not stop.is_set():
                    try:
                        message = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    if isinstance(message, bytes):
                        header = protocol.decode_header(message)
                        counts[index] += 1
                        received[0] += len(message)
                        first[index].set()
                        await ws.send(protocol.encode_control(protocol.Ack(header.frame_id)))
        except (OSError, TimeoutError, ConnectionClosed, protocol.ProtocolError) as exc:
            errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1

    tasks = [asyncio.create_task(viewer(i)) for i in range(readers)]
    waiters = [asyncio.create_task(event.wait()) for event in first]
    await asyncio.wait(waiters, timeout=ACCEPT_TIMEOUT_S)
    for waiter in waiters:
        waiter.cancel()
    live = sum(1 for event in first if event.is_set())
    start_counts = sum(counts)
    print(EDGE_WINDOW_START, flush=True)
    await asyncio.sleep(duration_s)
    deliveries = sum(counts) - start_counts
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return ReaderReport(readers, received[0], deliveries, live, dict(errors))


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["serve", "read", "ws-read"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--readers", type=int, required=True)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.role == "serve":
        report: ServerReport | ReaderReport = asyncio.run(serve(args.port, args.readers, args.duration))
    elif args.role == "ws-read":
        report = asyncio.run(ws_read(args.port, args.readers, args.duration))
    else:
        report = asyncio.run(read(args.port, args.readers))
    print(json.dumps(asdict(report)), flush=True)


if __name__ == "__main__":
    main()
