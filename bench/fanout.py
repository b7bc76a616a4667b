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
import json
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.constants import FANOUT_PAYLOAD_BYTES
from bench.linkemu import stop_process

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
        assert server.stdout is not None
        port = int(json.loads(server.stdout.readline())["listening"])
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


def run_framecast_fanout(readers: int, duration_s: float) -> FanoutResult:
    """FRAMECAST INTEGRATION: the same measurement against the framecast edge.

    To do once the edge exists: publish a 50 KB frame to the bus in a loop,
    connect ``readers`` WebSocket viewers (compression off, acking frames),
    count frames received, and read the edge's CPU seconds from /proc.
    """
    from bench.systems import framecast_unavailable_reason

    reason = framecast_unavailable_reason() or "framecast fan-out not wired yet"
    return skipped_result(FRAMECAST_EDGE_TARGET, readers, duration_s, reason, STATUS_SKIPPED)


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["serve", "read"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--readers", type=int, required=True)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.role == "serve":
        report: ServerReport | ReaderReport = asyncio.run(serve(args.port, args.readers, args.duration))
    else:
        report = asyncio.run(read(args.port, args.readers))
    print(json.dumps(asdict(report)), flush=True)


if __name__ == "__main__":
    main()
