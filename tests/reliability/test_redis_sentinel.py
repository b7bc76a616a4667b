"""The bus behind Redis Sentinel: the master SIGKILLed, Sentinel promotes its replica, the services follow.

A Debian `redis-server` master and replica, three `redis-sentinel` processes
(quorum 2), and the reliability stack (real inference, real edge) configured
with `redis+sentinel://.../framecast`. Viewers stay on their connection.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.reliability.conftest import Stack
from tests.reliability.redis_topologies import SentinelGroup
from tests.reliability.support import Viewer, record, run_viewers, stop_viewers, wait_stream
from tests.reliability.test_bus_faults import HttpPoller
from tests.support.timing import scaled, wait_until_async, wall_us

RESUME_LIMIT_S = 5.0


@pytest.mark.timeout(240)
async def test_sentinel_failover_services_follow_the_new_master(tmp_path: Path) -> None:
    group = SentinelGroup().start()
    assert group.master is not None and group.replica is not None
    stack = Stack(group.master, tmp_path, redis_url=group.url)
    try:
        stack.start()
        await wait_stream(stack.ws())
        viewers = [Viewer(stack.ws()) for _ in range(3)]
        await run_viewers(viewers)
        await wait_until_async("frames to every viewer", lambda: all(len(v.frames) >= 10 for v in viewers), 30)
        old_master = group.master_port()
        assert old_master == group.master.port

        with HttpPoller(stack.base) as poller:
            await wait_until_async("readiness samples", lambda: len(poller.samples) >= 3, 10)
            t_kill = time.monotonic()
            wall_kill_us = wall_us()
            group.master.kill()
            await wait_until_async("/readyz 503 while no master", lambda: poller.first(t_kill, 503) is not None, 10)
            await wait_until_async("Sentinel to promote the replica",
                                   lambda: group.master_port() == group.replica.port, 30)  # type: ignore[union-attr]
            t_failover = time.monotonic()
            await wait_until_async("frames captured after the kill, through the new master",
                                   lambda: all(any(f.capture_us > wall_kill_us for f in v.frames) for v in viewers),
                                   RESUME_LIMIT_S * 3)
            resume = [next(f.recv_mono for f in v.frames if f.capture_us > wall_kill_us) for v in viewers]
            await wait_until_async("/readyz 200 again", lambda: poller.first(max(resume), 200) is not None, 10)
        t_unready = poller.first(t_kill, 503)
        t_ready = poller.first(t_failover, 200)
        assert t_unready is not None and t_ready is not None
        figures = {"failover_s": round(t_failover - t_kill, 2),
                   "resume_after_failover_s": [round(t - t_failover, 2) for t in resume],
                   "resume_after_kill_s_max": round(max(resume) - t_kill, 2),
                   "readyz_503_after_kill_s": round(t_unready - t_kill, 2),
                   "readyz_200_after_failover_s": round(t_ready - t_failover, 2)}
        record("sentinel_failover", **figures)
        await stop_viewers(viewers)
        assert max(resume) - t_failover <= scaled(RESUME_LIMIT_S), figures
        assert all(v.connects == 1 and not v.closed for v in viewers), \
            [(v.connects, v.close_code, v.error) for v in viewers]  # resumed on the same connection
        assert stack.edge is not None and stack.edge.alive(), stack.logs()
        assert stack.inference is not None and stack.inference.alive(), stack.logs()
        assert "Traceback" not in stack.logs(), stack.logs()
    finally:
        stack.stop()
        group.stop()
