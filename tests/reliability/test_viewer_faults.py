"""Faulty viewers: one that never reads, one whose TCP path freezes, ones that reset mid-frame.

Each is detected and closed by the edge (ack/read timeout, or the reset
itself), its memory is released, and the healthy viewers' frame rate holds.
"""

from __future__ import annotations

import asyncio
import socket
import time

import psutil  # type: ignore[import-untyped]

from tests.reliability.conftest import Stack, StackFactory
from tests.reliability.support import FreezeRelay, Viewer, record, reset, run_viewers, stop_viewers, wait_stream
from tests.support.metrics import metric
from tests.support.rawws import ws_handshake
from tests.support.timing import scaled, wait_until_async

ACK_TIMEOUT_S = 3.0


def _redis_conns(stack: Stack) -> int:
    port = stack.redis.port
    return sum(1 for c in psutil.Process(stack.edge_pid).net_connections("tcp") if c.raddr and c.raddr.port == port)
HEALTHY = 5


def _peer_closed(sock: socket.socket, within: float) -> float | None:
    """Drain a socket; seconds until the edge's end of it (EOF/RST) shows, or None."""
    sock.settimeout(0.2)
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            if not sock.recv(1 << 20):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def _read_into_a_frame(sock: socket.socket, nbytes: int) -> None:
    """Read the hello/status and the start of a binary frame, leaving the rest of it unread."""
    got = b""
    while len(got) < nbytes:
        chunk = sock.recv(nbytes - len(got))
        if not chunk:
            raise ConnectionError("edge closed early")
        got += chunk
    assert b"\x82" in got, "a binary frame had started"


def _edge_peer_ports(pid: int) -> set[int]:
    return {c.raddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr and c.status == "ESTABLISHED"}


async def test_faulty_viewers_are_closed_and_others_keep_their_rate(make_stack: StackFactory) -> None:
    stack = make_stack(edge_args=["--ack-timeout-s", str(ACK_TIMEOUT_S), "--ping-interval-s", "2",
                                  "--ping-timeout-s", "3"])
    await wait_stream(stack.ws())
    healthy = [Viewer(stack.ws()) for _ in range(HEALTHY)]
    await run_viewers(healthy)
    await wait_until_async("frames to healthy viewers", lambda: all(len(v.frames) >= 10 for v in healthy), 30)
    t0 = time.monotonic()
    await asyncio.sleep(3.0)  # baseline measurement window
    t1 = time.monotonic()
    base = [v.fps(t0, t1) for v in healthy]
    before, redis_before = stack.edge_stats(), _redis_conns(stack)
    text = stack.metrics()
    timeouts_before = metric(text, "framecast_edge_closes_total", code="4008")

    # --- the faults ------------------------------------------------------------------------
    never_reads = await asyncio.to_thread(ws_handshake, stack.port, rcvbuf=4096)
    relay = await FreezeRelay(stack.port).start()
    frozen = Viewer(f"ws://127.0.0.1:{relay.port}/ws/demo").start()
    await wait_until_async("frames through the relay", lambda: len(frozen.frames) >= 3, 20)
    relay.freeze()
    t_fault = time.monotonic()
    resets = 0
    for _ in range(5):
        sock = await asyncio.to_thread(ws_handshake, stack.port)
        await asyncio.to_thread(_read_into_a_frame, sock, 3000)
        reset(sock)
        resets += 1
    await wait_until_async("4008 for the never-reading and frozen viewers",
                           lambda: metric(stack.metrics(), "framecast_edge_closes_total", code="4008")
                     >= timeouts_before + 2, ACK_TIMEOUT_S + 15, interval=0.2)
    t_detect = time.monotonic() - t_fault
    await wait_until_async("the edge dropped the frozen connection",
                           lambda: not set(relay.upstream_ports) & _edge_peer_ports(stack.edge_pid), 10)
    await wait_until_async("only the healthy viewers left on the edge",
                           lambda: metric(stack.metrics(), "framecast_edge_connected_viewers") == HEALTHY, 10,
                           interval=0.2)
    t2 = time.monotonic()
    during = [v.fps(t_fault, t2) for v in healthy]
    # only now read the stuck socket (reading earlier would unstick it): the edge has ended it
    never_reads_s = await asyncio.to_thread(_peer_closed, never_reads, scaled(10))
    never_reads.close()
    await relay.close()
    await frozen.stop()
    # viewer sockets must all be released; Redis connections (a pool capped at 16) are counted apart
    await wait_until_async("the edge to release the faulty viewers' sockets",
                           lambda: stack.edge_stats().fds - _redis_conns(stack) <= before.fds - redis_before + 2, 10)
    after = stack.edge_stats()

    print(f"healthy fps baseline {base}, during faults {during}")
    assert all(not v.closed and v.connects == 1 for v in healthy), [(v.close_code, v.error) for v in healthy]
    assert never_reads_s is not None, "the never-reading viewer was never closed"
    mean_base, mean_during = sum(base) / len(base), sum(during) / len(during)
    assert mean_base > 5, base
    assert mean_during >= 0.75 * mean_base, (base, during)
    assert min(during) >= 0.6 * mean_base, (base, during)
    rss_growth = after.rss_bytes - before.rss_bytes
    assert rss_growth < 32 * 2**20, f"edge RSS grew {rss_growth / 2**20:.1f} MiB"
    record("viewer_faults", healthy_fps_baseline=round(mean_base, 1), healthy_fps_during=round(mean_during, 1),
           fps_ratio=round(mean_during / mean_base, 2), detect_never_reads_and_frozen_s=round(t_detect, 1),
           ack_timeout_s=ACK_TIMEOUT_S, resets_mid_frame=resets, edge_rss_growth_mib=round(rss_growth / 2**20, 1),
           edge_fds_before_after=f"{before.fds}/{after.fds}")
    await stop_viewers(healthy)
