"""Fan-out at the same offered load: N WebSocket viewers x 30 fps, the same viewers for every server.

Servers (each its own process; CPU from /proc over the same measuring window):

* ``framecast-acking``: the framecast edge (an embedded Valkey, a publisher
  thread in this process XADDing one frame of the given size at 30 fps);
  viewers send a hello and ack every frame.
* ``framecast-no-acks``: the same edge; viewers send nothing (the seed's client).
* ``raw-acks``: a minimal asyncio server that completes the WebSocket
  handshake, frames one message per frame (at 30 fps) and writes that same
  bytes object to every transport whose buffer is empty; it reads and
  discards what the viewers send (acks). The floor a Python edge can reach.
* ``websockets-broadcast``: the ``websockets`` library's server and its
  ``broadcast()`` at 30 fps; its handlers read and discard the acks.

Viewers (``bench.fanout view``, in ``viewer_processes(N)`` processes) are one
minimal asyncio WebSocket client each, parsing frames by hand; the raw and
websockets servers get the same acks the framecast edge gets (they discard
them). Each viewer counts the frames it got in the window and the latency
from the frame header's capture time (the publisher's clock for framecast,
the framing moment for the other two) to its arrival.

Reported per row: CPU us per delivery (server CPU over the window / frames
the viewers received), fps per viewer (min and median), latency p50/p95 and
RSS per viewer (server RSS after the viewers joined, minus before, over N).

Run the suite with ``python -m bench.run --no-links --no-video``; one row:
``python -m bench.fanout row --target raw-acks --viewers 200 --size 60000``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.linkemu import read_line, stop_process
from bench.metrics import percentile
from bench.procstat import process_tree, sample

HOST = "127.0.0.1"
FPS = 30.0
STREAM = "fanout"
TIER = "high"
FRAME_SIZE = (1280, 720)
QUALITY = 85
CONNECT_TIMEOUT_S = 60.0
PROCESS_GRACE_S = 30.0
READY = "READY"
GO = "GO"
MB = 1e6
KB = 1e3
VIEWERS_PER_PROCESS = 250
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"

RAW_ACKS = "raw-acks"
WEBSOCKETS_BROADCAST = "websockets-broadcast"
FRAMECAST_ACKING = "framecast-acking"
FRAMECAST_NO_ACKS = "framecast-no-acks"
TARGETS = (FRAMECAST_ACKING, FRAMECAST_NO_ACKS, RAW_ACKS, WEBSOCKETS_BROADCAST)
STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
STATUS_ERROR = "error"


@dataclass(frozen=True)
class FanoutResult:
    """One fan-out measurement row (every field present; None when not measured)."""

    target: str
    viewers: int
    payload_bytes: int
    workers: int
    status: str
    reason: str
    window_s: float
    connected: int | None = None
    deliveries: int | None = None
    server_cpu_s: float | None = None
    cpu_us_per_delivery: float | None = None
    fps_min: float | None = None
    fps_median: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    rss_per_viewer_kb: float | None = None
    viewer_cpu_s: float | None = None
    host_load_1m: float | None = None  # the machine's load average after the window (other work running)
    cpu_us_rounds: list[float] | None = None  # every round's CPU us per delivery (this row is the median round)


def median_rounds(rounds: list[FanoutResult]) -> FanoutResult:
    """One row from several rounds of the same measurement: the round with the median CPU per delivery (all its
    fields from that round), with every round's figure in `cpu_us_rounds`; an error when none measured."""
    ok = sorted((r for r in rounds if r.status == STATUS_OK and r.cpu_us_per_delivery is not None),
                key=lambda r: r.cpu_us_per_delivery or 0.0)
    if not ok:
        return rounds[-1]
    return replace(ok[(len(ok) - 1) // 2], cpu_us_rounds=[r.cpu_us_per_delivery or 0.0 for r in rounds
                                                         if r.status == STATUS_OK])


def fanout_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CPU per delivery of each target over the raw reference's (raw-acks), same size, viewers and workers.

    With rounds (`median_rounds`), each round's row is paired with the raw row of the same round (measured a
    minute apart at most: the plan runs a size and viewer count's targets one after the other) and the ratio
    is the median of those side-by-side ratios; `ratio_of_medians` is the ratio of the rows' medians.
    """
    raw = {(r["payload_bytes"], r["viewers"]): r for r in rows
           if r["target"] == RAW_ACKS and r["status"] == STATUS_OK and r["cpu_us_per_delivery"]}
    out = []
    for r in rows:
        ref = raw.get((r["payload_bytes"], r["viewers"]))
        if r["target"] == RAW_ACKS or ref is None or r["status"] != STATUS_OK or not r["cpu_us_per_delivery"]:
            continue
        of_medians = round(r["cpu_us_per_delivery"] / ref["cpu_us_per_delivery"], 2)
        mine, theirs = r.get("cpu_us_rounds") or [], ref.get("cpu_us_rounds") or []
        paired = [round(a / b, 2) for a, b in zip(mine, theirs, strict=False) if b] \
            if len(mine) == len(theirs) > 1 else []
        out.append({"target": r["target"], "viewers": r["viewers"], "payload_bytes": r["payload_bytes"],
                    "workers": r["workers"], "ratio_to_raw_acks": statistics.median(paired) if paired else of_medians,
                    "ratio_rounds": paired, "ratio_of_medians": of_medians})
    return out


def viewer_processes(viewers: int) -> int:
    return max(1, -(-viewers // VIEWERS_PER_PROCESS))


# --- the wire (framecast's header inside a WebSocket binary message) -------------------------------------------
def framecast_frame(frame_id: int, payload: bytes) -> bytes:
    from framecast import protocol

    width, height = FRAME_SIZE
    header = protocol.FrameHeader(frame_id, time.time_ns() // 1000, width, height, quality=QUALITY)
    return protocol.encode_frame(header, payload)


def ws_binary(data: bytes) -> bytes:
    n = len(data)
    if n < 126:
        head = bytes((0x82, n))
    elif n < 65536:
        head = bytes((0x82, 126)) + struct.pack("!H", n)
    else:
        head = bytes((0x82, 127)) + struct.pack("!Q", n)
    return head + data


def ws_accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


# --- the raw reference server ---------------------------------------------------------------------------------
async def raw_serve(size: int) -> None:
    """Handshake, then one pre-framed message per frame to every transport with an empty buffer; acks discarded."""
    transports: list[asyncio.Transport] = []
    loop = asyncio.get_running_loop()

    class _Viewer(asyncio.Protocol):
        def __init__(self) -> None:
            self.transport: asyncio.Transport | None = None
            self.request = b""
            self.open = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if self.open:
                return  # acks: read and discarded
            self.request += data
            if b"\r\n\r\n" not in self.request:
                return
            key = ""
            for line in self.request.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip()
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 b"Sec-WebSocket-Accept: " + ws_accept_key(key).encode() + b"\r\n\r\n")
            self.open = True
            transports.append(self.transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.transport in transports:
                transports.remove(self.transport)

    server = await loop.create_server(_Viewer, HOST, 0)
    print(json.dumps({"listening": server.sockets[0].getsockname()[1]}), flush=True)
    payload = bytes(size)
    period = 1.0 / FPS
    next_at = loop.time()
    frame_id = 0
    while True:
        frame_id += 1
        message = ws_binary(framecast_frame(frame_id, payload))  # framed once, the same bytes for everyone
        for t in transports:
            if not t.get_write_buffer_size():
                t.write(message)
        next_at += period
        await asyncio.sleep(max(0.0, next_at - loop.time()))


async def websockets_serve(size: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            async for _ in ws:  # acks: read and discarded
                pass
        except ConnectionClosed:
            pass
        finally:
            connections.discard(ws)

    async with serve(handler, HOST, 0, compression=None, max_size=None, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"listening": port}), flush=True)
        loop = asyncio.get_running_loop()
        payload = bytes(size)
        next_at = loop.time()
        frame_id = 0
        while True:
            frame_id += 1
            broadcast(connections, framecast_frame(frame_id, payload))
            next_at += 1.0 / FPS
            await asyncio.sleep(max(0.0, next_at - loop.time()))


# --- viewers --------------------------------------------------------------------------------------------------
@dataclass
class ViewerReport:
    connected: int
    frames: list[int]  # per viewer, in the window
    latency_ms: list[float]  # every frame of the window
    errors: dict[str, int]
    cpu_s: float


async def view(port: int, viewers: int, acks: bool) -> None:
    """`viewers` minimal WebSocket viewers; READY once all got a frame, then count for the window given on stdin."""
    from framecast import protocol

    loop = asyncio.get_running_loop()
    counting = [False]
    frames = [0] * viewers
    latencies: list[float] = []
    errors: dict[str, int] = {}
    first = [loop.create_future() for _ in range(viewers)]
    hello = protocol.encode_control(protocol.ClientHello(client_id="fanout", tier=TIER)).encode()
    mask = b"\x00\x00\x00\x00"  # a zero mask: valid framing, no XOR work on either side

    def client_frame(text: bytes) -> bytes:
        return bytes((0x81, 0x80 | len(text))) + mask + text

    hello_frame = client_frame(hello)

    class _Viewer(asyncio.Protocol):
        def __init__(self, index: int) -> None:
            self.index = index
            self.buf = bytearray()
            self.open = False
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            key = base64.b64encode(os.urandom(16)).decode()
            transport.write(f"GET /ws/{STREAM} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                            f"\r\n".encode())

        def data_received(self, data: bytes) -> None:
            self.buf += data
            buf = self.buf
            if not self.open:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                if not buf.startswith(b"HTTP/1.1 101"):
                    errors[bytes(buf[:40]).decode("latin-1")] = errors.get(bytes(buf[:40]).decode("latin-1"), 0) + 1
                    assert self.transport is not None
                    self.transport.close()
                    return
                del buf[:end + 4]
                self.open = True
                if acks:
                    assert self.transport is not None
                    self.transport.write(hello_frame)
            pos = 0
            now_us = time.time_ns() // 1000
            while len(buf) - pos >= 2:
                b0, n = buf[pos], buf[pos + 1] & 0x7F
                head = 2
                if n == 126:
                    if len(buf) - pos < 4:
                        break
                    n, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
                elif n == 127:
                    if len(buf) - pos < 10:
                        break
                    n, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
                if len(buf) - pos < head + n:
                    break
                if b0 & 0x0F == 2:
                    with memoryview(buf) as whole, whole[pos + head:pos + head + n] as message:
                        header = protocol.decode_header(message)
                    if counting[0]:
                        frames[self.index] += 1
                        latencies.append((now_us - header.capture_us) / 1000)
                    if not first[self.index].done():
                        first[self.index].set_result(None)
                    if acks:
                        assert self.transport is not None
                        self.transport.write(client_frame(b'{"type":"ack","id":%d}' % header.frame_id))
                elif b0 & 0x0F == 8:
                    assert self.transport is not None
                    self.transport.close()
                pos += head + n
            del buf[:pos]

        def connection_lost(self, exc: Exception | None) -> None:
            if not first[self.index].done():
                first[self.index].set_result(None)
                errors["lost before a frame"] = errors.get("lost before a frame", 0) + 1

    transports = []
    for i in range(viewers):
        try:
            t, _ = await loop.create_connection(lambda i=i: _Viewer(i), HOST, port)  # type: ignore[misc]
            transports.append(t)
        except OSError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            first[i].set_result(None)
    await asyncio.wait(first, timeout=CONNECT_TIMEOUT_S)
    connected = sum(1 for t in transports if not t.is_closing())
    print(READY, flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    window_s = float(line.split()[1])
    cpu0 = time.process_time()
    counting[0] = True
    await asyncio.sleep(window_s)
    counting[0] = False
    cpu = time.process_time() - cpu0
    for t in transports:
        t.abort()
    print(json.dumps(asdict(ViewerReport(connected, frames, latencies, errors, cpu))), flush=True)


# --- framecast ------------------------------------------------------------------------------------------------
def _publish(redis_url: str, size: int, stop: threading.Event) -> None:
    from framecast import bus
    from framecast.protocol import TierInfo

    client = bus.sync_client(redis_url)
    publisher = bus.BusPublisher(client, STREAM, keys=bus.Keys(), maxlen=60)
    width, height = FRAME_SIZE
    tier = TierInfo(name=TIER, width=width, height=height, quality=QUALITY, codec="jpeg")
    info = bus.StreamInfo(STREAM, (tier,), FPS, model="bench-fanout", source="bench")
    payload = bytes(size)
    frame_id, next_heartbeat = 1, 0.0
    next_at = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_heartbeat:
            publisher.heartbeat(info)
            next_heartbeat = now + 1.0
        publisher.publish({TIER: framecast_frame(frame_id, payload)}, time.time_ns() // 1000)
        frame_id += 1
        next_at += 1.0 / FPS
        stop.wait(max(0.0, next_at - time.monotonic()))
    client.close()


def _cpu_rss(pids: list[int]) -> tuple[float, int]:
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            s = sample(pid)
        except OSError:
            continue
        cpu += s.cpu_s
        rss += s.rss_bytes
    return cpu, rss


# --- one row --------------------------------------------------------------------------------------------------
def _json_line(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError(f"no JSON report in output: {text[-300:]!r}")
    obj: dict[str, Any] = json.loads(lines[-1])
    return obj


def _measure(target: str, viewers: int, size: int, workers: int, window_s: float, port: int,
             server_pids: Callable[[], list[int]], acks: bool) -> FanoutResult:
    pids = server_pids()
    _, rss_before = _cpu_rss(pids)
    procs: list[subprocess.Popen[str]] = []
    try:
        per = -(-viewers // viewer_processes(viewers))
        left = viewers
        while left > 0:
            n = min(per, left)
            left -= n
            argv = [sys.executable, "-m", "bench.fanout", "view", "--port", str(port), "--viewers", str(n)]
            procs.append(subprocess.Popen([*argv, *([] if acks else ["--no-acks"])], cwd=_repo_root(), text=True,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        for p in procs:
            if read_line(p, CONNECT_TIMEOUT_S + PROCESS_GRACE_S).strip() != READY:
                raise ValueError("viewers did not get ready")
        time.sleep(1.0)  # let joins settle (first frames, tier choice)
        pids = server_pids()
        cpu0, rss_joined = _cpu_rss(pids)
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{GO} {window_s}\n")
            p.stdin.flush()
        t0 = time.monotonic()
        reports = [ViewerReport(**_json_line(p.communicate(timeout=window_s + PROCESS_GRACE_S)[0])) for p in procs]
        cpu1, _ = _cpu_rss(pids)
        wall = time.monotonic() - t0
    except (OSError, ValueError, TypeError, KeyError, TimeoutError, subprocess.TimeoutExpired) as exc:
        return FanoutResult(target, viewers, size, workers, STATUS_ERROR, repr(exc)[:200], window_s)
    finally:
        for p in procs:
            stop_process(p)
    frames = [f for r in reports for f in r.frames]
    deliveries = sum(frames)
    latencies = [x for r in reports for x in r.latency_ms]
    connected = sum(r.connected for r in reports)
    errors: dict[str, int] = {}
    for r in reports:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    cpu = cpu1 - cpu0
    fps = sorted(f / window_s for f in frames)
    return FanoutResult(
        target, viewers, size, workers, STATUS_OK if connected == viewers else STATUS_ERROR,
        "" if connected == viewers else f"{connected} of {viewers} viewers: {errors}"[:200], round(wall, 2),
        connected, deliveries, round(cpu, 3), round(cpu / deliveries * 1e6, 2) if deliveries else None,
        round(fps[0], 1) if fps else None, round(statistics.median(fps), 1) if fps else None,
        _round(percentile(latencies, 50)), _round(percentile(latencies, 95)),
        round((rss_joined - rss_before) / max(connected, 1) / KB, 1), round(sum(r.cpu_s for r in reports), 2),
        round(os.getloadavg()[0], 1),
    )  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run_row(target: str, viewers: int, size: int, window_s: float, workers: int = 1) -> FanoutResult:
    """Start the server for `target`, measure `viewers` viewers for `window_s`, stop everything."""
    if target in (RAW_ACKS, WEBSOCKETS_BROADCAST):
        role = "raw-serve" if target == RAW_ACKS else "ws-serve"
        server = subprocess.Popen([sys.executable, "-m", "bench.fanout", role, "--size", str(size)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=_repo_root())
        try:
            port = int(json.loads(read_line(server, PROCESS_GRACE_S))["listening"])
            return _measure(target, viewers, size, 1, window_s, port, lambda: [server.pid], acks=True)
        except (OSError, ValueError, KeyError, TimeoutError) as exc:
            return FanoutResult(target, viewers, size, 1, STATUS_ERROR, repr(exc)[:200], window_s)
        finally:
            stop_process(server)
    from tests.support.procs import wait_stream_live

    from bench.systems import framecast_unavailable_reason
    from framecast.dev.embedded import free_port

    reason = framecast_unavailable_reason()
    if reason:
        return FanoutResult(target, viewers, size, workers, STATUS_SKIPPED, reason, window_s)
    from framecast.dev.embedded import EmbeddedRedis

    stop = threading.Event()
    redis_server = EmbeddedRedis().start()
    publisher = threading.Thread(target=_publish, args=(redis_server.url, size, stop), daemon=True)
    edge: subprocess.Popen[str] | None = None
    try:
        port = free_port(HOST)
        env = {**os.environ, "FRAMECAST_REDIS_URL": redis_server.url, "FRAMECAST_WORKERS": str(workers)}
        edge = subprocess.Popen([sys.executable, "-m", "framecast.edge", "--host", HOST, "--port", str(port),
                                 "--viewers-per-ip", "0", "--max-viewers", str(max(1000, viewers * 2))],
                                env=env, cwd=_repo_root(), text=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        publisher.start()
        wait_stream_live(f"http://{HOST}:{port}", stream=STREAM, timeout=PROCESS_GRACE_S)
        edge_pid = edge.pid
        return _measure(target, viewers, size, workers, window_s, port, lambda: process_tree(edge_pid),
                        acks=target == FRAMECAST_ACKING)
    except (OSError, ValueError, TimeoutError) as exc:
        return FanoutResult(target, viewers, size, workers, STATUS_ERROR, repr(exc)[:200], window_s)
    finally:
        stop.set()
        if edge is not None:
            stop_process(edge)
        publisher.join(2.0)
        redis_server.stop()


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=["row", "view", "raw-serve", "ws-serve"])
    parser.add_argument("--target", choices=TARGETS, default=RAW_ACKS)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-acks", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "raw-serve":
        asyncio.run(raw_serve(args.size))
    elif args.role == "ws-serve":
        asyncio.run(websockets_serve(args.size))
    elif args.role == "view":
        asyncio.run(view(args.port, args.viewers, not args.no_acks))
    else:
        print(json.dumps(asdict(run_row(args.target, args.viewers, args.size, args.window, args.workers))))


if __name__ == "__main__":
    main()
