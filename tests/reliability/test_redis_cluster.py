"""The bus on a real Redis Cluster: three streams on three masters, one master killed, its replica takes over.

Six Debian `redis-server` processes in cluster mode (3 masters, 3 replicas,
formed by `redis-cli --cluster create`), three real inference services (one
stream per master), one real edge, real WebSocket viewers on each stream.
The master SIGKILLed is the one holding the streams index as well as one
stream, so the test also proves that no stream depends on another's slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from framecast.bus import Keys, async_client
from framecast.edge.settings import EdgeSettings
from tests.reliability.redis_topologies import RedisClusterNodes
from tests.reliability.support import STREAM_ARGS, Viewer, http_text, record, wait_stream
from tests.reliability.test_bus_faults import HttpPoller
from tests.support.metrics import metric
from tests.support.procs import Service, edge_service, inference_service, service_port, wait_http
from tests.support.timing import scaled, wait_until_async, wall_us

KEYS = Keys()
RESUME_LIMIT_S = 5.0


def max_gap(viewer: Viewer, t0: float, t1: float) -> float:
    """Longest time without a frame between t0 (or the viewer's first frame, if later) and t1."""
    start = max(t0, viewer.frames[0].recv_mono) if viewer.frames else t0
    times = [start, *(f.recv_mono for f in viewer.frames if start <= f.recv_mono <= t1), t1]
    return max(b - a for a, b in itertools.pairwise(times))


def streams_on_distinct_masters(cluster: RedisClusterNodes, killed: int) -> list[str]:
    """Three stream names whose hash tags land on three different masters, the first on `killed`."""
    chosen: dict[int, str] = {}
    for i in range(200):
        name = f"cam{i}"
        chosen.setdefault(cluster.master_of_key(KEYS.frames(name, "high")), name)
        if len(chosen) == 3:
            break
    assert len(chosen) == 3, chosen
    return [chosen[killed], *(s for m, s in sorted(chosen.items()) if m != killed)]


async def publish_gaps_around(url: str, streams: list[str], wall_kill_us: int) -> list[float]:
    """Per stream, the longest time between two XADDs (entry ids are the master's clock, ms) from 1 s before
    the kill on: a gap here is on the publishing side, before any edge or viewer."""
    client = async_client(url)
    gaps = []
    try:
        for s in streams:
            since = f"{wall_kill_us // 1000 - 1000}"
            times = sorted({int(entry_id.split(b"-")[0]) for tier in ("high", "low")
                            for entry_id, _ in await client.xrange(KEYS.frames(s, tier), min=since)})
            gaps.append(max((b - a for a, b in itertools.pairwise(times)), default=0) / 1000)
    finally:
        await client.aclose()
    return gaps


@contextlib.contextmanager
def services_on(url: str, streams: list[str], log_dir: Path) -> Iterator[tuple[Service, list[Service]]]:
    inference = [inference_service(url, *STREAM_ARGS, stream=s).start(log_dir) for s in streams]
    edge = edge_service(url, "--log-level", "warning", "--drain-delay-s", "0.2").start(log_dir)
    try:
        yield edge, inference
    finally:
        for s in (edge, *inference):
            s.stop()


@pytest.mark.timeout(300)
async def test_cluster_master_failover_viewers_resume_on_their_connection(tmp_path: Path) -> None:
    cluster = RedisClusterNodes().start()
    try:
        killed = cluster.master_of_key(KEYS.streams_index())
        streams = streams_on_distinct_masters(cluster, killed)
        with services_on(cluster.url, streams, tmp_path) as (edge, inference):
            base = f"http://127.0.0.1:{service_port(edge)}"
            wait_http(base + "/healthz", 60, edge)
            for s in streams:
                await wait_stream(f"ws://127.0.0.1:{service_port(edge)}/ws/{s}")
            viewers = {s: [Viewer(f"ws://127.0.0.1:{service_port(edge)}/ws/{s}") for _ in range(2)] for s in streams}
            everyone = [v for vs in viewers.values() for v in vs]
            for v in everyone:
                v.start()
            await wait_until_async("frames to every viewer", lambda: all(len(v.frames) >= 10 for v in everyone), 30)
            listed = {s["stream"] for s in json.loads(http_text(base + "/streams"))["streams"]}
            assert listed == set(streams), listed  # the index and each stream's meta, across three masters

            with HttpPoller(base) as poller:
                await wait_until_async("readiness samples", lambda: len(poller.samples) >= 3, 10)
                t_kill = time.monotonic()
                cluster.kill_master(killed)
                # the replica is promoted by the cluster itself (no operator step)
                await wait_until_async("the replica of the killed master to take its slots",
                                       lambda: cluster.master_of_key(KEYS.frames(streams[0], "high")) != killed, 20)
                t_promoted = time.monotonic()
                hit = viewers[streams[0]]
                # a viewer has resumed when it gets a frame captured after the kill
                wall_kill_us = wall_us() - int((time.monotonic() - t_kill) * 1e6)
                await wait_until_async("frames captured after the kill",
                                       lambda: all(any(f.capture_us > wall_kill_us for f in v.frames) for v in hit),
                                       RESUME_LIMIT_S * 3)
                resume = [next(f.recv_mono for f in v.frames if f.capture_us > wall_kill_us) - t_kill for v in hit]
                publish_gaps = await publish_gaps_around(cluster.url, streams[1:], wall_kill_us)
                await asyncio.sleep(2.0)  # watch the other streams a while after the failover too
                t_end = time.monotonic()
            unready = [t for t, _, r in poller.samples if t >= t_kill and r == 503]
            others = [v for s in streams[1:] for v in viewers[s]]
            gaps_other = [max_gap(v, t_kill - 1.0, t_end) for v in others]
            gaps_before = [max_gap(v, t_kill - 3.0, t_kill) for v in everyone]  # the same viewers, no fault
            # the same gaps in capture time: large ones here mean the source's frames were missing (publish side)
            capture_gaps = [max((b.capture_us - a.capture_us for a, b in itertools.pairwise(
                [f for f in v.frames if t_kill - 1.0 <= f.recv_mono <= t_end])), default=0) / 1e6 for v in others]
            for v in everyone:
                await v.stop()
            figures = {"failover_s": round(t_promoted - t_kill, 2),
                       "resume_s_max": round(max(resume), 2), "resume_s": [round(r, 2) for r in resume],
                       "other_streams_max_gap_s": round(max(gaps_other), 3),
                       "max_gap_before_kill_s": round(max(gaps_before), 3),
                       "other_streams_max_capture_gap_s": round(max(capture_gaps), 3),
                       "other_streams_max_publish_gap_s": round(max(publish_gaps), 3),
                       "readyz_503_samples": len(unready),
                       "edge_bus_errors": metric(http_text(base + "/metrics"), "framecast_edge_bus_errors_total")}
            record("cluster_master_failover", **figures)
            assert max(resume) <= RESUME_LIMIT_S * scaled(1), figures
            assert all(v.connects == 1 and not v.closed for v in everyone), \
                [(v.url, v.connects, v.close_code, v.error) for v in everyone]  # resumed without reconnecting
            # the other masters' streams never stalled: no gap reaches the edge's stall threshold, no viewer is told
            assert max(gaps_other) < scaled(EdgeSettings().stall_after_s), figures
            assert not any(c.get("state") == "stalled" for v in others for t, c in v.controls if t >= t_kill), \
                [v.statuses() for v in others]
            assert edge.alive() and all(i.alive() for i in inference), "a service died during the failover"
            # the edge's client follows the new topology: it is ready again and reads the promoted master
            assert poller.samples[-1][2] == 200, poller.samples[-5:]
            client = async_client(cluster.url)
            try:
                assert await client.xlen(KEYS.frames(streams[0], "high")) > 0
            finally:
                await client.aclose()
    finally:
        cluster.stop()
