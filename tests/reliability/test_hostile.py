"""Hostile input against a running edge: each bad message costs only its own connection, with a reasoned close.

And a bounded storm of connect/disconnect cycles of every shape (clean close,
reset after a frame, half-open handshakes): afterwards the edge holds no more
viewers, file descriptors, threads or memory than before.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil  # type: ignore[import-untyped]
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from framecast import constants as C
from framecast.protocol import Ack, encode_control
from tests.reliability.conftest import Stack, stack_running
from tests.reliability.support import Viewer, record, reset
from tests.support.metrics import metric
from tests.support.rawws import read_close_code, ws_handshake
from tests.support.timing import scaled, wait_until_async

CHURN_CYCLES = int(os.environ.get("FRAMECAST_CHURN_CYCLES", "2000"))
CHURN_SECONDS = 60.0
CONCURRENCY = 16
T = TypeVar("T")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_running(tmp_path_factory.mktemp("hostile"),
                       edge_args=["--viewers-per-ip", "0", "--max-viewers", "500"]) as s:
        yield s


async def _send_and_wait_close(url: str, messages: list[str | bytes]) -> tuple[int | None, str, int]:
    """Connect, send `messages`, return (close code, reason, binary frames received before the close)."""
    frames = 0
    try:
        async with connect(url, compression=None, max_size=1 << 24, ping_interval=None, open_timeout=scaled(10),
                           close_timeout=2) as ws:
            for m in messages:
                try:
                    await ws.send(m)
                except ConnectionClosed:
                    break
            async with asyncio.timeout(scaled(10)):
                while True:
                    if isinstance(await ws.recv(), bytes):
                        frames += 1
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), (exc.rcvd.reason if exc.rcvd else ""), frames
    return None, "", frames


def _frame(opcode: int, payload: bytes, *, mask: bool = True, rsv: int = 0) -> bytes:
    """One client WebSocket frame, built by hand so it can break the rules."""
    head = bytes([0x80 | rsv << 4 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 1 << 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _raw_close_code(port: int, data: bytes) -> int | None:
    """Send raw bytes after a handshake; read server frames until its close frame; return its code."""
    sock = ws_handshake(port)
    try:
        sock.sendall(data)
        return read_close_code(sock)
    finally:
        sock.close()


# (case, messages, expected close code)
BAD_MESSAGES: list[tuple[str, list[str | bytes], int]] = [
    ("binary-from-viewer", [b"\x00" * 64], C.CLOSE_UNSUPPORTED_DATA),
    ("invalid-json", ["{not json"], C.CLOSE_BAD_MESSAGE),
    ("json-not-object", ['"hello"'], C.CLOSE_BAD_MESSAGE),
    ("unknown-type", ['{"type": "launch", "target": "moon"}'], C.CLOSE_BAD_MESSAGE),
    ("wrong-field-type", ['{"type": "ack", "id": "seven"}'], C.CLOSE_BAD_MESSAGE),
    ("nan-and-infinity", ['{"type": "set", "max_fps": NaN}'], C.CLOSE_BAD_MESSAGE),
    ("deep-nesting", ["[" * 1500 + "]" * 1500], C.CLOSE_BAD_MESSAGE),
    ("non-ascii-unknown-tier", ['{"type": "set", "tier": "' + "é" * 100 + '"}'], C.CLOSE_BAD_MESSAGE),
    ("oversized-text", ["x" * 20_000], C.CLOSE_MESSAGE_TOO_BIG),
    ("oversized-binary", [b"\x01" * (1 << 20)], C.CLOSE_MESSAGE_TOO_BIG),
    ("control-flood", [encode_control(Ack(i)) for i in range(3000)], C.CLOSE_POLICY_VIOLATION),
]

RAW_FRAMES: list[tuple[str, bytes, int]] = [
    ("invalid-utf8-text", _frame(0x1, b'{"type": "\xff\xfe"}'), 1007),
    ("unmasked-frame", _frame(0x1, b'{"type": "ack", "id": 1}', mask=False), C.CLOSE_PROTOCOL_ERROR),
    ("reserved-opcode", _frame(0x3, b"boo"), C.CLOSE_PROTOCOL_ERROR),
    ("rsv-bits-set", _frame(0x1, b"{}", rsv=0b111), C.CLOSE_PROTOCOL_ERROR),
    ("oversized-ping", _frame(0x9, b"p" * 126), C.CLOSE_PROTOCOL_ERROR),
]


async def _with_bystander(stack: Stack, action: Awaitable[T]) -> tuple[T, Viewer]:
    """Run `action` (a coroutine) while a well-behaved viewer watches; return its result and the viewer."""
    bystander = Viewer(stack.ws()).start()
    await wait_until_async("frames to the bystander", lambda: len(bystander.frames) >= 2, 20)
    result = await action
    n = len(bystander.frames)
    await wait_until_async("bystander frames after the hostile input", lambda: len(bystander.frames) >= n + 3, 10)
    await bystander.stop()
    return result, bystander


@pytest.mark.parametrize(("case", "messages", "code"), BAD_MESSAGES, ids=[c for c, _, _ in BAD_MESSAGES])
async def test_bad_message_costs_only_its_connection(stack: Stack, case: str, messages: list[str | bytes],
                                                      code: int) -> None:
    result, bystander = await _with_bystander(stack, _send_and_wait_close(stack.ws(), messages))
    got, reason, _ = result
    assert got == code, f"{case}: closed with {got} {reason!r}, expected {code}"
    if code >= 4000 or code in (C.CLOSE_UNSUPPORTED_DATA, C.CLOSE_POLICY_VIOLATION):
        assert reason, f"{case}: the close says why"
    assert not bystander.closed and bystander.connects == 1
    assert stack.edge is not None and stack.edge.alive()


@pytest.mark.parametrize(("case", "data", "code"), RAW_FRAMES, ids=[c for c, _, _ in RAW_FRAMES])
async def test_protocol_violation_costs_only_its_connection(stack: Stack, case: str, data: bytes,
                                                            code: int) -> None:
    result, bystander = await _with_bystander(stack, asyncio.to_thread(_raw_close_code, stack.port, data))
    assert result == code, f"{case}: closed with {result}, expected {code}"
    assert not bystander.closed and bystander.connects == 1


# --- connect/disconnect storm ---------------------------------------------------------------------


async def _cycle(stack: Stack, kind: int) -> str:
    url = stack.ws()
    try:
        if kind == 0:  # clean: hello, first message, close handshake
            async with connect(url, compression=None, ping_interval=None, open_timeout=scaled(10),
                               close_timeout=2) as ws:
                await ws.recv()
            return "clean"
        if kind == 1:  # reset (RST) after the first frame
            ws = await connect(url, compression=None, ping_interval=None, open_timeout=scaled(10), max_size=1 << 24)
            async with asyncio.timeout(scaled(10)):
                while not isinstance(await ws.recv(), bytes):
                    pass
            sock = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.transport.abort()
            return "reset"
        if kind == 2:  # half an HTTP request, then gone
            _reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
            writer.write(b"GET /ws/demo HTTP/1.1\r\nHost: x\r\nUpgrade: webs")
            await writer.drain()
            writer.close()
            return "half-request"
        # kind 3: handshake done, closed without reading anything (FIN)
        sock = await asyncio.to_thread(ws_handshake, stack.port)
        if random.random() < 0.5:
            reset(sock)
        else:
            sock.close()
        return "no-read"
    except (ConnectionClosed, OSError, TimeoutError) as exc:
        return f"error:{type(exc).__name__}"


async def _storm(stack: Stack, cycles: int, seconds: float, concurrency: int = CONCURRENCY) -> Counter[str]:
    results: Counter[str] = Counter()
    deadline = time.monotonic() + scaled(seconds)
    counter = iter(range(cycles))

    async def worker() -> None:
        for i in counter:
            if time.monotonic() > deadline:
                return
            results[await _cycle(stack, i % 4)] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def _redis_conns(stack: Stack) -> int:
    port = stack.redis.port
    return sum(1 for c in psutil.Process(stack.edge_pid).net_connections("tcp") if c.raddr and c.raddr.port == port)


def _edge_counts(stack: Stack) -> tuple[float, float]:
    text = stack.metrics()
    return metric(text, "framecast_edge_connected_viewers"), metric(text, "framecast_edge_bus_readers")


async def test_connect_disconnect_storm_leaks_nothing(stack: Stack, tmp_path: Path) -> None:
    bystander = Viewer(stack.ws()).start()
    await wait_until_async("frames to the bystander", lambda: len(bystander.frames) >= 2, 20)
    await _storm(stack, 100, 20)  # warm-up: allocator pools, lazily created objects
    await wait_until_async("warm-up viewers gone", lambda: _edge_counts(stack)[0] == 1, 15, interval=0.2)
    before, counts_before, redis_before = stack.edge_stats(), _edge_counts(stack), _redis_conns(stack)
    t0 = time.monotonic()
    n0 = len(bystander.frames)
    results = await _storm(stack, CHURN_CYCLES, CHURN_SECONDS)
    storm_s = time.monotonic() - t0
    storm_fps = (len(bystander.frames) - n0) / storm_s
    await wait_until_async("viewer and reader gauges back to before",
                           lambda: _edge_counts(stack) == counts_before, 15, interval=0.2)
    # fds of aborted connections are released as soon as the edge sees the reset: poll, do not sleep
    # fds of aborted connections are released as soon as the edge sees the reset: poll, do not sleep.
    # Redis connections are counted apart: redis-py's pool keeps one per concurrent command it ever needed
    # (bounded by the peak of concurrent handshakes, not by the number of cycles)
    await wait_until_async("viewer fds back to before",
                           lambda: stack.edge_stats().fds - _redis_conns(stack) <= before.fds - redis_before + 2, 10,
                           interval=0.2)
    redis_after = _redis_conns(stack)
    after = stack.edge_stats()
    final_metrics = stack.metrics()
    total = sum(results.values())
    errors = {k: v for k, v in results.items() if k.startswith("error")}
    await bystander.stop()
    assert not bystander.closed and bystander.connects == 1
    assert total >= min(CHURN_CYCLES, 500), f"only {total} cycles ran in {storm_s:.0f}s: {results}"
    assert sum(errors.values()) <= total * 0.01, results
    assert after.threads <= before.threads + 2, (before, after)
    assert redis_after <= redis_before + CONCURRENCY + 2, f"redis connections {redis_before} -> {redis_after}"
    rss_growth = after.rss_bytes - before.rss_bytes
    assert rss_growth < 24 * 2**20, f"edge RSS grew {rss_growth / 2**20:.1f} MiB over {total} cycles"
    assert storm_fps > 5, f"the bystander got {storm_fps:.1f} fps during the storm"
    assert metric(final_metrics, "framecast_edge_connected_viewers") == 1
    record("connect_disconnect_storm", cycles=total, seconds=round(storm_s, 1),
           cycles_per_s=round(total / storm_s), kinds=dict(results),
           fds_before_after=f"{before.fds}/{after.fds}",
           redis_conns_before_after=f"{redis_before}/{redis_after}",
           threads_before_after=f"{before.threads}/{after.threads}",
           rss_growth_mib=round(rss_growth / 2**20, 2), bystander_fps_during=round(storm_fps, 1))


async def test_non_ascii_stream_name_is_refused_with_4004(stack: Stack) -> None:
    from urllib.parse import quote

    result, bystander = await _with_bystander(stack, _send_and_wait_close(stack.ws(quote("é" * 64)), []))
    code, why, frames = result
    assert (code, frames) == (C.CLOSE_UNKNOWN_STREAM, 0) and why, (code, why)
    assert not bystander.closed
