"""Edge measurements for docs/edge.md: run `python -m bench.edge_measure`.

1. one acking viewer on loopback: FPS and latency (capture -> received, one host = one clock)
2. 50 acking viewers: deliveries per edge CPU-second (frames written / edge process CPU time)
3. memory per idle viewer: edge RSS growth for 200 connected viewers of a stalled stream
Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import psutil  # type: ignore[import-untyped]
from tests.support.metrics import metric
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.timing import wall_us
from tests.support.viewer import ViewerClient, open_viewer

from framecast.dev.embedded import EmbeddedRedis

LADDER = (("high", 1280, 720, 80), ("medium", 854, 480, 70), ("low", 426, 240, 50))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


async def one_viewer(edge: EdgeProcess, seconds: float) -> dict[str, float]:
    v = await ViewerClient(edge.ws(), hello={"tier": "high"}).run(seconds)
    from framecast.bus import now_us  # noqa: F401 - same clock as capture_us

    # latency: receive time (monotonic) is converted with one wall/monotonic offset
    offset_us = wall_us() - int(time.monotonic() * 1e6)
    lat = [(int(t * 1e6) + offset_us - cap) / 1000 for (_, cap, _, t, _) in v.frames[15:]]
    return {"fps": round(v.fps(), 1), "latency_p50_ms": round(statistics.median(lat), 1),
            "latency_p95_ms": round(pct(lat, 0.95), 1), "latency_max_ms": round(max(lat), 1),
            "frame_bytes": int(statistics.mean(f[4] for f in v.frames))}


async def many_viewers(edge: EdgeProcess, n: int, seconds: float, tier: str = "high",
                       ack: bool = True) -> dict[str, Any]:
    proc = psutil.Process(edge.proc.pid)  # type: ignore[union-attr]
    viewers = [ViewerClient(edge.ws(), hello={"tier": tier}, ack=ack) for _ in range(n)]
    tasks = [asyncio.create_task(v.run(seconds + 3)) for v in viewers]
    await asyncio.sleep(2.0)  # everyone connected and flowing
    sent0 = metric(edge.metrics(), "framecast_edge_frames_sent_total")
    times0 = proc.cpu_times()
    cpu0 = times0.user + times0.system
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    sent1 = metric(edge.metrics(), "framecast_edge_frames_sent_total")
    times1 = proc.cpu_times()
    cpu1 = times1.user + times1.system
    wall = time.monotonic() - t0
    await asyncio.gather(*tasks)
    deliveries = sent1 - sent0
    fps = [v.fps(skip=2.0) for v in viewers]
    frame_bytes = statistics.mean(f[4] for v in viewers for f in v.frames[-10:])
    return {"viewers": n, "tier": tier, "acking": ack, "frame_bytes": round(frame_bytes),
            "edge_user_s": round(times1.user - times0.user, 2), "edge_sys_s": round(times1.system - times0.system, 2),
            "deliveries_per_s": round(deliveries / wall), "edge_cpu_percent": round(
        100 * (cpu1 - cpu0) / wall), "deliveries_per_cpu_s": round(deliveries / max(cpu1 - cpu0, 1e-6)),
        "viewer_fps_min": round(min(fps), 1), "viewer_fps_mean": round(statistics.mean(fps), 1)}


async def idle_memory(edge: EdgeProcess, pub: Publisher, n: int) -> dict[str, float]:

    proc = psutil.Process(edge.proc.pid)  # type: ignore[union-attr]
    pub.paused.set()
    await asyncio.sleep(1.0)
    rss0 = proc.memory_info().rss
    conns = []
    for _ in range(n):
        ws = await open_viewer(edge.ws())
        await ws.recv()  # hello
        conns.append(ws)
    await asyncio.sleep(1.5)
    rss1 = proc.memory_info().rss
    for ws in conns:
        await ws.close()
    pub.paused.clear()
    return {"idle_viewers": n, "rss_before_mib": round(rss0 / 2**20, 1), "rss_after_mib": round(rss1 / 2**20, 1),
            "kib_per_idle_viewer": round((rss1 - rss0) / n / 1024, 1)}


async def main() -> None:
    with EmbeddedRedis() as redis_server:
        pub = Publisher(redis_server.url, ladder=LADDER, fps=30).start()
        edge = EdgeProcess(redis_server.url, extra=["--viewers-per-ip", "0"]).start()
        try:
            out = {"one_viewer": await one_viewer(edge, 10.0),
                   "fifty_viewers": await many_viewers(edge, 50, 10.0),
                   "fifty_viewers_medium": await many_viewers(edge, 50, 10.0, "medium"),
                   "fifty_viewers_medium_no_acks": await many_viewers(edge, 50, 10.0, "medium", ack=False),
                   "idle_memory": await idle_memory(edge, pub, 200),
                   "load_average": [round(x, 1) for x in psutil.getloadavg()], "cpus": psutil.cpu_count()}
            text = edge.metrics()
            count = metric(text, "framecast_edge_glass_to_glass_seconds_count")
            total = metric(text, "framecast_edge_glass_to_glass_seconds_sum")
            out["edge_glass_to_glass_mean_ms"] = round(1000 * total / max(count, 1), 1)
            print(json.dumps(out, indent=2))
        finally:
            edge.stop()
            pub.stop()


if __name__ == "__main__":
    asyncio.run(main())
