"""WebSocket-level attacks on the shipped edge: ping floods from clients that never read, invalid UTF-8
floods (log flood), client-chosen close codes (label cardinality), clients vanishing mid-answer.
(A stream name with a trailing newline: tests/unit/edge/test_security_limits.py.)"""

from __future__ import annotations

import asyncio
import socket

from websockets.asyncio.client import connect

from framecast import constants as C
from tests.reliability.conftest import Stack
from tests.security.support import attacker_address, watch_attack
from tests.support.metrics import metric
from tests.support.rawws import client_frame, flood, read_close_code, upgrade_request, ws_handshake
from tests.support.timing import scaled

PING_FLOOD_BYTES = 96 * 2**20  # what one attacker may send (~750,000 pings): enough to hold >64 MiB of pongs
PING_FLOOD_S = 8.0


def _ping_flood(port: int, source: str) -> tuple[int | None, int]:
    """Pings as fast as the socket takes them, never reading (a 4 KiB receive buffer): (close code, bytes sent)."""
    sock = ws_handshake(port, source=source, rcvbuf=4096)
    blob = client_frame(0x9, b"p" * 120) * 8000  # ~1 MiB of pings per send
    sent = flood(sock, blob, PING_FLOOD_BYTES, PING_FLOOD_S)
    try:
        return read_close_code(sock, within=3), sent
    finally:
        sock.close()


async def test_ping_flood_from_a_client_that_never_reads(stack: Stack) -> None:
    before = metric(stack.metrics(), "framecast_edge_connections_cut_total", reason="ping_flood")

    async def attack() -> list[tuple[int | None, int]]:
        return list(await asyncio.gather(*(asyncio.to_thread(_ping_flood, stack.port, attacker_address(i))
                                           for i in range(3))))

    results, figures = await watch_attack(stack, "ping_flood", attack)
    figures.extra["attackers"] = [{"close": code, "sent_mib": round(sent / 2**20, 1)} for code, sent in results]
    figures.record()
    cut = metric(stack.metrics(), "framecast_edge_connections_cut_total", reason="ping_flood") - before
    assert cut == 3, f"ping floods cut: {cut}; attackers saw {results}"
    for code, sent in results:
        assert code in (C.CLOSE_POLICY_VIOLATION, None), code  # 1008 when its buffer still took the close frame
        assert sent < PING_FLOOD_BYTES, "the edge read pings for the whole flood"


def _invalid_utf8(port: int, source: str) -> int | None:
    sock = ws_handshake(port, source=source)
    try:
        sock.sendall(client_frame(0x1, b'{"type": "\xff\xfe"}'))
        return read_close_code(sock)
    finally:
        sock.close()


async def test_invalid_utf8_flood_closes_1007_without_a_log_flood(stack: Stack) -> None:
    assert stack.edge is not None
    log_before = len(stack.edge.log())

    async def attack() -> list[int | None]:
        codes: list[int | None] = []
        for batch in range(10):
            codes += await asyncio.gather(*(asyncio.to_thread(_invalid_utf8, stack.port, attacker_address(batch % 3))
                                            for _ in range(30)))
        return codes

    codes, figures = await watch_attack(stack, "invalid_utf8_flood", attack)
    logged = stack.edge.log()[log_before:]
    figures.extra.update(connections=len(codes), log_bytes=len(logged))
    figures.record()
    assert codes.count(1007) == 300, codes
    assert "Traceback" not in logged and "Invalid UTF-8" not in logged
    assert len(logged) < 2000, f"300 bad messages wrote {len(logged)} bytes of log:\n{logged[:1500]}"


async def _close_with(url: str, code: int) -> None:
    async with connect(url, compression=None, ping_interval=None, open_timeout=scaled(10), close_timeout=2) as ws:
        await ws.recv()
        await ws.close(code)


async def test_client_close_codes_do_not_become_label_values(stack: Stack) -> None:
    codes = [3000 + i * 7 for i in range(40)] + [4000 + i * 11 for i in range(40)]

    async def attack() -> None:
        for i in range(0, len(codes), 20):
            await asyncio.gather(*(_close_with(stack.ws(), c) for c in codes[i:i + 20]))

    await watch_attack(stack, "close_code_labels", attack)
    text = stack.metrics()
    labels = {line.split('code="', 1)[1].split('"', 1)[0] for line in text.splitlines()
              if line.startswith("framecast_edge_closes_total{")}
    assert not labels & {str(c) for c in codes}, sorted(labels)
    assert metric(text, "framecast_edge_closes_total", code="other") > 0


def _vanish(port: int, source: str, kind: int) -> None:
    """A client gone mid-answer: reset right after its upgrade request or after the 101, or after asking for a page."""
    import struct as _struct

    try:
        if kind == 0:
            sock = ws_handshake(port, source=source)
        elif kind == 3:
            sock = socket.create_connection(("127.0.0.1", port), timeout=scaled(10), source_address=(source, 0))
            sock.sendall(upgrade_request(port))
        else:
            sock = socket.create_connection(("127.0.0.1", port), timeout=scaled(10), source_address=(source, 0))
            path = "/static/viewer.js" if kind == 1 else "/"
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
    except OSError:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _struct.pack("ii", 1, 0))
    sock.close()


async def test_clients_vanishing_mid_answer_log_no_traceback(stack: Stack) -> None:
    assert stack.edge is not None
    log_before = len(stack.edge.log())

    async def attack() -> None:
        for batch in range(10):
            await asyncio.gather(*(asyncio.to_thread(_vanish, stack.port, attacker_address(i % 3), (batch + i) % 4)
                                   for i in range(30)))

    await watch_attack(stack, "vanishing_clients", attack)
    logged = stack.edge.log()[log_before:]
    assert "Exception in ASGI application" not in logged and "Traceback" not in logged, logged[-3000:]
