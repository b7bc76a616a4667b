"""One viewer that never reads must not slow the others, must stay bounded and must be closed."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

import psutil  # type: ignore[import-untyped]

from tests.support.metrics import metric
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.timing import scaled, wait_until_async
from tests.support.viewer import ViewerClient


def stuck_viewer(port: int, stream: str = "demo") -> socket.socket:
    """A WebSocket viewer with a tiny receive buffer that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/{stream} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Drain what the edge wrote and report whether it ended the connection (EOF or reset)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


async def run_viewers(edge: EdgeProcess, n: int, seconds: float) -> list[float]:
    viewers = [ViewerClient(edge.ws(), hello={"tier": "medium"}) for _ in range(n)]
    await asyncio.gather(*(v.run(seconds) for v in viewers))
    return [v.fps() for v in viewers]


async def test_stuck_viewer_does_not_slow_others_and_is_closed(edge: EdgeProcess, publisher: Publisher) -> None:
    proc = psutil.Process(edge.proc.pid)  # type: ignore[union-attr]
    baseline = await run_viewers(edge, 10, 3.0)
    closes_before = metric(edge.metrics(), "framecast_edge_closes_total", code="4008")
    rss_before = proc.memory_info().rss
    stuck = await asyncio.to_thread(stuck_viewer, edge.port)
    try:
        with_stuck = await run_viewers(edge, 10, 3.0)
        rss_after = proc.memory_info().rss
        base_mean = sum(baseline) / len(baseline)
        stuck_mean = sum(with_stuck) / len(with_stuck)
        print(f"isolation: fps without stuck viewer {base_mean:.1f} (min {min(baseline):.1f}), "
              f"with {stuck_mean:.1f} (min {min(with_stuck):.1f}); edge RSS {rss_before / 2**20:.1f} -> "
              f"{rss_after / 2**20:.1f} MiB")
        assert base_mean > 20, baseline
        assert stuck_mean >= 0.9 * base_mean, (baseline, with_stuck)
        assert min(with_stuck) >= 0.8 * base_mean, with_stuck
        assert rss_after - rss_before < 32 * 2**20  # no unbounded per-viewer buffering
        # the stuck viewer is closed with 4008 once the ack timeout (3 s here) passes
        await wait_until_async("4008 close of the stuck viewer",
                               lambda: metric(edge.metrics(), "framecast_edge_closes_total", code="4008")
                       > closes_before, 10, interval=0.2)
        assert await asyncio.to_thread(closed_by_peer, stuck, scaled(10))
    finally:
        stuck.close()
