"""SIGTERM to an edge with viewers: readiness fails first, viewers get 1012 within the drain timeout.

Then the same behind real nginx with two replicas (the compose topology run
natively): the drained replica's viewers reconnect through nginx to the other.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from framecast import constants as C
from tests.reliability.conftest import StackFactory
from tests.reliability.support import Viewer, http_status, record, run_viewers, stop_viewers, wait_stream
from tests.support.procs import edge_service, service_port, wait_http
from tests.support.timing import scaled, wait_until_async

VIEWERS = 50
DRAIN_DELAY_S = 1.0
DRAIN_TIMEOUT_S = 6.0
DRAIN_ARGS = ["--drain-delay-s", str(DRAIN_DELAY_S), "--drain-timeout-s", str(DRAIN_TIMEOUT_S)]


class ReadyPoller(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, float, int]] = []  # request sent, response received, status
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            sent = time.monotonic()
            status = http_status(self.url, 1)
            self.samples.append((sent, time.monotonic(), status))
            self.stop_event.wait(0.02)

    def first_not_ready(self, after: float) -> float | None:
        """When the first failed readiness answer (asked after `after`) arrived: the time a balancer would see it."""
        return next((received for sent, received, s in self.samples if sent >= after and s != 200), None)


async def test_sigterm_with_50_viewers(make_stack: StackFactory) -> None:
    stack = make_stack(edge_args=[*DRAIN_ARGS, "--viewers-per-ip", "0"])
    await wait_stream(stack.ws())
    viewers = [Viewer(stack.ws()) for _ in range(VIEWERS)]
    await run_viewers(viewers, spacing=0.01)
    await wait_until_async("a frame to each of 50 viewers", lambda: all(v.frames for v in viewers), 60)
    poller = ReadyPoller(stack.base + "/readyz")
    poller.start()
    await wait_until_async("readiness samples", lambda: len(poller.samples) >= 2, 10)
    assert stack.edge is not None and stack.edge.proc is not None
    t_term = time.monotonic()
    stack.edge.signal(signal.SIGTERM)
    try:
        await wait_until_async("every viewer closed", lambda: all(v.closed for v in viewers), DRAIN_TIMEOUT_S + 5)
        exit_code = await asyncio.to_thread(stack.edge.proc.wait, scaled(DRAIN_TIMEOUT_S + 5))
        t_exit = time.monotonic()
    finally:
        poller.stop_event.set()
        poller.join(5)
    t_unready = poller.first_not_ready(t_term)
    assert t_unready is not None, "readiness never failed"
    first_close = min(v.close_mono or 0 for v in viewers)
    last_close = max(v.close_mono or 0 for v in viewers)
    codes = sorted({v.close_code for v in viewers}, key=str)
    assert codes == [C.CLOSE_SERVICE_RESTART], (codes, {v.error for v in viewers})
    assert t_unready < first_close, "readiness fails before the first viewer is closed"
    assert all("draining" in v.statuses() for v in viewers), "viewers are told before they are closed"
    assert last_close - t_term <= DRAIN_TIMEOUT_S, f"a viewer waited {last_close - t_term:.1f}s"
    assert exit_code == 0 and t_exit - t_term <= DRAIN_TIMEOUT_S + 1.5, (exit_code, t_exit - t_term)
    record("sigterm_50_viewers", viewers=VIEWERS, unready_after_sigterm_s=round(t_unready - t_term, 3),
           first_close_s=round(first_close - t_term, 2), last_close_s=round(last_close - t_term, 2),
           exit_s=round(t_exit - t_term, 2), drain_delay_s=DRAIN_DELAY_S, drain_timeout_s=DRAIN_TIMEOUT_S)
    await stop_viewers(viewers)


@pytest.mark.timeout(scaled(180))
def test_sigterm_behind_nginx_viewers_move_to_the_other_replica(make_stack: StackFactory, tmp_path: Path) -> None:
    nginx_bin = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx_bin is None:
        pytest.skip("nginx not installed (Debian package nginx)")
    from tools.native_stack import Nginx
    from tools.viewers import ViewerPool

    stack = make_stack(edge_args=[*DRAIN_ARGS, "--edge-id", "edge-a"])
    other = edge_service(stack.redis.url, "--log-level", "warning", *DRAIN_ARGS, "--edge-id", "edge-b",
                         name="edge-b").start(tmp_path)
    nginx: Nginx | None = None
    try:
        wait_http(f"http://127.0.0.1:{service_port(other)}/readyz", 60, other)
        nginx = Nginx([f"127.0.0.1:{stack.port}", f"127.0.0.1:{service_port(other)}"], tmp_path, nginx_bin).start()
        asyncio.run(wait_stream(f"ws://127.0.0.1:{nginx.port}/ws/demo"))
        n = 16
        with ViewerPool(f"ws://127.0.0.1:{nginx.port}/ws/demo", n) as pool:
            deadline = time.monotonic() + scaled(40)
            while len(pool.connected()) < n:
                assert time.monotonic() < deadline, "viewers connected through nginx"
                time.sleep(0.1)
            on_a = [s for s in pool.states if s.server == "edge-a"]  # the client library reconnects them
            assert on_a and len(on_a) < n, f"least_conn spreads viewers: {[s.server for s in pool.states]}"
            assert stack.edge is not None and stack.edge.proc is not None
            connects_before = {s.index: s.connects for s in pool.states}
            t_term = time.monotonic()
            stack.edge.signal(signal.SIGTERM)

            def moved() -> bool:
                return all(s.server == "edge-b" and s.connects > connects_before[s.index]
                           and s.frames_since_connect > 0 for s in on_a)

            while not moved():
                assert time.monotonic() - t_term < scaled(DRAIN_TIMEOUT_S + 10), \
                    [(s.server, s.connects, s.frames_since_connect, s.last_error) for s in on_a]
                time.sleep(0.05)
            moved_s = time.monotonic() - t_term
            exit_code = stack.edge.proc.wait(scaled(DRAIN_TIMEOUT_S + 5))
            exit_s = time.monotonic() - t_term
            others_reconnected = [s for s in pool.states if s not in on_a and s.connects > connects_before[s.index]]
        assert all(s.connects > connects_before[s.index] for s in on_a)
        assert not others_reconnected, "viewers of the other replica were not disturbed"
        assert exit_code == 0 and exit_s <= DRAIN_TIMEOUT_S + 1.5
        record("sigterm_behind_nginx", viewers=n, on_drained_replica=len(on_a),
               all_moved_to_other_replica_s=round(moved_s, 2), drained_exit_s=round(exit_s, 2))
    finally:
        if nginx is not None:
            nginx.stop()
        other.stop()
