"""FRAMECAST_WORKERS: worker processes on one port (SO_REUSEPORT), one scrape for all, drain per process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from bench.procstat import process_tree
from prometheus_client.parser import text_string_to_metric_families

from framecast.edge.settings import EdgeSettings
from framecast.edge.workers import WorkerInfo, cpu_count, resolve_workers
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.timing import scaled
from tests.support.viewer import ViewerClient

VIEWERS = 8


def by_worker(text: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[s.labels.get("worker", "")] = out.get(s.labels.get("worker", ""), 0.0) + s.value
    return out


def test_workers_setting() -> None:
    assert EdgeSettings().workers == 1  # make run, tests: one process unless asked
    assert resolve_workers(3) == 3
    assert resolve_workers(0) == cpu_count() >= 1  # the edge image: one per CPU
    assert WorkerInfo.from_env() is None


@pytest.mark.timeout(120)
def test_two_workers_share_the_port_report_on_one_scrape_and_drain(redis_server: object, publisher: Publisher,
                                                                    tmp_path: Path) -> None:
    edge = EdgeProcess(publisher.url, extra=["--workers", "2", "--drain-delay-s", "0.5", "--viewers-per-ip", "0"])
    edge.start(str(tmp_path))
    try:
        assert edge.proc is not None
        deadline = time.monotonic() + scaled(20)
        workers = set(process_tree(edge.proc.pid)) - {edge.proc.pid}
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = set(process_tree(edge.proc.pid)) - {edge.proc.pid}
        assert len(workers) == 2, (workers, edge.log())
        names: set[str] = set()
        while len(names) < 2 and time.monotonic() < deadline:  # the kernel spreads connections over both
            names.add(httpx.get(edge.base + "/healthz", timeout=2).json()["edge"])
        assert len(names) == 2, names

        async def watch() -> list[ViewerClient]:
            viewers = [ViewerClient(edge.ws(), hello={"client_id": f"w{i}"}) for i in range(VIEWERS)]
            tasks = [asyncio.create_task(v.run(6.0)) for v in viewers]
            scrape_deadline = time.monotonic() + scaled(5)
            counts: dict[str, float] = {}
            while time.monotonic() < scrape_deadline:  # siblings' figures are at most ~1 s old
                await asyncio.sleep(0.25)
                text = (await asyncio.to_thread(httpx.get, edge.base + "/metrics", timeout=5)).text
                counts = by_worker(text, "framecast_edge_connected_viewers")
                if set(counts) == {"0", "1"} and sum(counts.values()) == VIEWERS:
                    break
            assert set(counts) == {"0", "1"} and sum(counts.values()) == VIEWERS, counts
            assert min(counts.values()) >= 1, f"SO_REUSEPORT gave one worker every viewer: {counts}"
            await asyncio.sleep(1.0)
            edge.proc.send_signal(15)  # type: ignore[union-attr]  # SIGTERM: every worker drains
            await asyncio.gather(*tasks)
            return viewers

        viewers = asyncio.run(watch())
        for v in viewers:
            assert len(v.frames) >= 30, (len(v.frames), edge.log())
            assert any(c.get("type") == "status" and c.get("state") == "draining" for c in v.controls), v.controls
            assert v.close_code == 1012, (v.close_code, v.close_reason)
        assert edge.proc.wait(scaled(15)) == 0
    finally:
        edge.stop()
