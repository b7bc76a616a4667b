"""HTTP and connection-layer attacks: header floods, slow and silent sockets, fd exhaustion.

Each runs against the real edge (defaults) while three honest viewers watch (support.watch_attack).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import threading
import time

from tests.reliability.conftest import Stack
from tests.reliability.support import Viewer
from tests.security.support import attacker_address, watch_attack
from tests.support.metrics import metric
from tests.support.rawws import flood, raw_connect, read_head, upgrade_request
from tests.support.timing import scaled, wait_until_async

HEADER_FLOOD_MAX_BYTES = 64 * 2**20
HEADER_FLOOD_S = 5.0


def _header_flood(port: int, source: str) -> tuple[bytes, int, float]:
    """A request whose header value never ends: (the answer, bytes sent, seconds until the edge closed)."""
    sock = raw_connect(port, source)
    t0 = time.monotonic()
    sent = flood(sock, b"a" * 65536, HEADER_FLOOD_MAX_BYTES, HEADER_FLOOD_S,
                 prefix=b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Flood: ")
    closed_after = time.monotonic() - t0
    sock.settimeout(scaled(5))
    try:
        answer = read_head(sock)
    finally:
        sock.close()
    return answer, sent, closed_after


async def test_endless_header_gets_431_and_a_close(stack: Stack) -> None:
    results: list[tuple[bytes, int, float]] = []

    async def attack() -> None:
        results.extend(await asyncio.gather(*(asyncio.to_thread(_header_flood, stack.port, attacker_address(i))
                                              for i in range(3))))

    await watch_attack(stack, "header_flood", attack)
    for answer, sent, closed_after in results:
        assert answer.startswith(b"HTTP/1.1 431"), f"endless header answered {answer[:80]!r} after {sent} bytes"
        assert closed_after < scaled(HEADER_FLOOD_S), f"the edge read {sent} bytes for {closed_after:.1f}s"
    assert metric(stack.metrics(), "framecast_edge_connections_refused_total", reason="header_too_large") >= 3


def _long_line(port: int, source: str, what: str) -> bytes:
    sock = raw_connect(port, source)
    try:
        if what == "request-line":
            sock.sendall(b"GET /streams?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: edge\r\n\r\n")
        else:  # one 10 KiB header line in a WebSocket upgrade (within the head limit, over the WS parser's line)
            sock.sendall(upgrade_request(port, extra="X-Long: " + "b" * 10240 + "\r\n"))
        return read_head(sock)
    finally:
        sock.close()


async def test_long_request_line_and_long_upgrade_header_are_answered_and_closed(stack: Stack) -> None:
    async def attack() -> tuple[bytes, bytes]:
        line = await asyncio.to_thread(_long_line, stack.port, attacker_address(), "request-line")
        upgrade = await asyncio.to_thread(_long_line, stack.port, attacker_address(), "upgrade-header")
        return line, upgrade

    (line, upgrade), _ = await watch_attack(stack, "long_lines", attack)
    assert line.startswith(b"HTTP/1.1 431"), line[:80]
    assert upgrade.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")), upgrade[:80]


class SlowClients:
    """Sockets that connect and then say nothing, or send a request head one byte a second (slowloris)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = []
        self.refused = 0  # answered 503 / reset at once
        self.failed = 0  # could not even connect
        self.ended: set[int] = set()
        self._stop = threading.Event()

    def open(self, source: str, n: int) -> None:
        for _ in range(n):
            try:
                self.socks.append(raw_connect(self.port, source, timeout=2.0))
            except OSError:
                self.failed += 1

    def trickle(self) -> None:
        """One byte of a never-ending request head per socket per second; count the ones the edge ended."""
        head = b"GET /ws/demo HTTP/1.1\r\nHost: edge\r\nX-Slow: "
        i = 0
        while not self._stop.wait(1.0):
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.send(head[i:i + 1] if i < len(head) else b"a")
            i += 1

    def open_count(self) -> int:
        """Sockets the edge has not closed yet (reading what it answered, then EOF or a reset = closed)."""
        n = 0
        for s in self.socks:
            if s.fileno() in self.ended:
                continue
            s.setblocking(False)
            try:
                while s.recv(65536):
                    pass
                self.ended.add(s.fileno())  # EOF
            except BlockingIOError:
                n += 1
            except OSError:
                self.ended.add(s.fileno())
        return n

    def close(self) -> None:
        self._stop.set()
        for s in self.socks:
            s.close()


async def test_silent_and_slow_sockets_are_capped_cut_and_logged(stack: Stack) -> None:
    """300 silent + slowloris sockets from two addresses against an edge whose fd limit is 256."""
    pid = stack.edge_pid
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (256, old[1]))
    slow = SlowClients(stack.port)
    joined: list[Viewer] = []
    facts: dict[str, float] = {}

    async def attack() -> None:
        await asyncio.to_thread(slow.open, attacker_address(0), 150)
        await asyncio.to_thread(slow.open, attacker_address(1), 150)
        trickle = threading.Thread(target=slow.trickle, daemon=True)
        trickle.start()
        t0 = time.monotonic()
        facts["held_at_first"] = metric(stack.metrics(), "framecast_edge_connections")
        facts["cap"] = metric(stack.metrics(), "framecast_edge_connection_limit")
        # a new viewer gets in once the edge has cut the sockets that never finished a request head
        await wait_until_async("every silent or slow socket closed by the edge",
                               lambda: slow.open_count() == 0, 5 + 5, interval=0.25)
        facts["all_cut_after_s"] = round(time.monotonic() - t0, 1)
        await wait_until_async("the edge's connection count back to the honest viewers'",
                               lambda: metric(stack.metrics(), "framecast_edge_connections") <= 8, 5, interval=0.25)
        facts["slots_back_after_s"] = round(time.monotonic() - t0, 1)
        v = Viewer(stack.ws()).start()
        joined.append(v)
        await wait_until_async("a new viewer's frames", lambda: len(v.frames) >= 3 or v.closed, 15)

    try:
        await watch_attack(stack, "silent_and_slow_sockets", attack)
    finally:
        slow.close()
        for v in joined:
            await v.stop()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    text = stack.metrics()
    refused_cap = metric(text, "framecast_edge_connections_refused_total", reason="connection_cap")
    refused_ip = metric(text, "framecast_edge_connections_refused_total", reason="per_ip_connections")
    print(f"[security] silent_and_slow_sockets: {facts}, refused connection_cap={refused_cap} "
          f"per_ip={refused_ip}, connect failures {slow.failed}")
    assert joined and len(joined[0].frames) >= 3, f"a new viewer did not join: {joined[0].close_code} {joined[0].error}"
    assert facts["cap"] == 128 and facts["held_at_first"] <= 128, f"held more than the cap of a 256-fd edge: {facts}"
    assert refused_cap > 0 and refused_ip > 0
    assert stack.edge is not None and "connections refused" in stack.edge.log()
    assert metric(text, "framecast_edge_connection_limit") > 0
