"""Ack-driven adaptation: a viewer behind a slow (emulated) link moves down tiers and back up.

The viewer emulates a bottleneck link on its side: each frame "arrives" (and is
acked) when a virtual link of `rate` bytes/s has carried it, after the frames
before it. The edge sees only the acks, as it would through a load balancer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from framecast.bus import now_us
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import decode_header
from tests.support.link import FifoLink
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.timing import scaled
from tests.support.viewer import open_viewer


@pytest.fixture(scope="module")
def adapt_edge(redis_server: EmbeddedRedis, publisher: Publisher, tmp_path_factory: Any) -> Iterator[EdgeProcess]:
    proc = EdgeProcess(redis_server.url, extra=["--tier-down-hold-s", "1", "--tier-up-hold-s", "1.5",
                                                "--tier-probe-interval-s", "1.5", "--latency-target-ms", "100",
                                                "--ack-timeout-s", "5"]).start(str(tmp_path_factory.mktemp("a")))
    yield proc
    proc.stop()


async def test_moves_down_and_back_up(adapt_edge: EdgeProcess, publisher: Publisher) -> None:
    link = FifoLink(8e6)
    log: list[tuple[float, int, float]] = []  # (delivered at, tier, latency s)
    tiers_seen: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    acks: set[asyncio.Future[None]] = set()
    t0 = time.monotonic()
    phases = [(8e6, 2.0), (0.45e6, 6.0), (8e6, 8.0)]  # rate bytes/s, seconds

    async with open_viewer(adapt_edge.ws()) as ws:

        def delivered(frame_id: int, tier: int, capture_us: int) -> None:
            log.append((time.monotonic() - t0, tier, (now_us() - capture_us) / 1e6))
            acks.add(t := asyncio.ensure_future(ws.send(json.dumps({"type": "ack", "id": frame_id}))))
            t.add_done_callback(acks.discard)

        async def receive() -> None:
            async for msg in ws:
                if isinstance(msg, str):
                    obj = json.loads(msg)
                    if obj["type"] == "tier":
                        tiers_seen.append((time.monotonic() - t0, obj["tier"]))
                    continue
                h = decode_header(msg)
                at = link.deliver_at(time.monotonic(), len(msg))
                loop.call_at(loop.time() + (at - time.monotonic()), delivered, h.frame_id, h.tier, h.capture_us)

        rx = asyncio.create_task(receive())
        end = 0.0
        marks = []
        for rate, seconds in phases:
            link.rate = rate
            marks.append(end)
            end += scaled(seconds)
            await asyncio.sleep(max(0.0, end - (time.monotonic() - t0)))
        rx.cancel()

    def window(a: float, b: float) -> list[tuple[float, int, float]]:
        return [x for x in log if a <= x[0] < b]

    fast1, slow, fast2 = marks[0], marks[1], marks[2]
    slow_tail = window(slow + scaled(3.5), fast2)
    end_tail = window(end - scaled(1.5), end)
    print("tier changes:", [(round(t, 1), n) for t, n in tiers_seen])
    if slow_tail:
        lat = sorted(x[2] for x in slow_tail)
        print(f"slow link: {len(slow_tail) / (fast2 - slow - scaled(3.5)):.1f} fps, tiers "
              f"{sorted({x[1] for x in slow_tail})}, latency p50 {lat[len(lat) // 2] * 1000:.0f} ms "
              f"p90 {lat[int(len(lat) * 0.9)] * 1000:.0f} ms")
    assert {x[1] for x in window(fast1 + 1, slow)} == {0}, "starts on the best tier on a fast link"
    # on the slow link the viewer ends on the lightest tier, at a near-full frame rate and bounded latency
    # (probes up to a heavier tier may happen there; they must fail back quickly)
    assert slow_tail and sum(x[1] == 2 for x in slow_tail) >= 0.5 * len(slow_tail), tiers_seen
    assert not any(x[1] == 0 for x in slow_tail), tiers_seen
    assert len(slow_tail) / (fast2 - slow - scaled(3.5)) > 20
    lat = sorted(x[2] for x in slow_tail)
    assert lat[int(len(lat) * 0.9)] < 0.25, lat
    # and it climbs back to the best tier when the link recovers
    assert end_tail and {x[1] for x in end_tail} == {0}, [(round(t, 1), n) for t, n in tiers_seen]
