"""Measure the numbers behind the capacity plan in docs/operations.md.

Two bounded experiments on the native stack (real Valkey, inference, edges, acking viewers):

1. **Viewers per edge core**: one edge replica, N acking viewers on the
   `high` tier; frames written per second of the edge's own CPU time
   (psutil on the edge process), and its resident memory per viewer.
2. **Redis egress**: R edge replicas, each with one viewer on every tier,
   so every replica runs one bus reader per tier; Redis' own output byte
   counter (INFO total_net_output_bytes) is compared with the formula
   `frames/s x sum(bytes per frame of the tiers read) x replicas`.

    .venv/bin/python -m bench.capacity     # about 3 minutes on 2 cores; writes tests/artifacts/capacity.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import redis
from tests.support.timing import wait_until
from tools.native_stack import NativeStack
from tools.viewers import ViewerPool

INFERENCE = ["--width", "1280", "--height", "720", "--fps", "15", "--tiers", "high=1280x720@85,low=640x360@60"]


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _redis_out(client: redis.Redis) -> tuple[int, float]:
    """Redis' own counters: bytes written to clients, and CPU seconds (user + sys) of the server."""
    info = client.info()
    return int(info["total_net_output_bytes"]), float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _metric(port: int, name: str) -> dict[str, float]:
    """Samples of one metric scraped straight from a service (labels text -> value)."""
    from tools.native_stack import http_get

    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):]] = float(value)
    return out


def _encoded_bytes(inference_port: int) -> dict[str, float]:
    """Mean encoded frame size per tier from the inference histogram."""
    sums = _metric(inference_port, "framecast_inference_encoded_bytes_sum")
    counts = _metric(inference_port, "framecast_inference_encoded_bytes_count")
    out = {}
    for labels, total in sums.items():
        tier = labels.split('tier="')[1].split('"')[0]
        if counts.get(labels):
            out[tier] = total / counts[labels]
    return out


def viewers_per_core(viewer_counts: list[int], seconds: float) -> list[dict[str, Any]]:
    rows = []
    # all viewers come from 127.0.0.1 here: lift the per-address limit
    with NativeStack(edges=1, inference_args=INFERENCE, edge_args=["--viewers-per-ip", "0"]) as stack:
        edge = psutil.Process(stack.edge_procs[0].pid)
        url = f"ws://127.0.0.1:{stack.edge_ports[0]}/ws/demo"
        idle_rss = edge.memory_info().rss
        for n in viewer_counts:
            with ViewerPool(url, n, tier="high", connect_spacing_s=0.01) as pool:
                def all_receiving(n: int = n, pool: ViewerPool = pool) -> bool:
                    return len(pool.connected()) == n

                wait_until(f"{n} viewers receiving", all_receiving, 60)
                time.sleep(2.0)  # settle after the joins before measuring a steady window
                cpu0, frames0, bytes0, t0 = _cpu_s(edge), pool.total_frames(), sum(s.bytes for s in pool.states), \
                    time.monotonic()
                time.sleep(seconds)
                cpu1, frames1, bytes1, t1 = _cpu_s(edge), pool.total_frames(), sum(s.bytes for s in pool.states), \
                    time.monotonic()
                rss = edge.memory_info().rss
            wall, cpu = t1 - t0, cpu1 - cpu0
            deliveries = frames1 - frames0
            rows.append({"viewers": n, "deliveries_per_s": round(deliveries / wall, 1),
                         "fps_per_viewer": round(deliveries / wall / n, 2),
                         "edge_cpu_cores": round(cpu / wall, 3),
                         "deliveries_per_cpu_s": round(deliveries / cpu, 0) if cpu > 0 else None,
                         "mbit_per_s": round((bytes1 - bytes0) * 8 / wall / 1e6, 1),
                         "edge_rss_mb": round(rss / 2**20, 1),
                         "rss_per_viewer_kb": round((rss - idle_rss) / n / 1024, 1)})
            print(rows[-1], flush=True)
        rows.append({"encoded_bytes": _encoded_bytes(stack.inference_port)})
    return rows


def redis_egress(replicas: int, seconds: float) -> dict[str, Any]:
    with NativeStack(edges=replicas, inference_args=[*INFERENCE, "--demand", "all"]) as stack:
        client = redis.Redis.from_url(stack.redis.url)
        pools = []
        for port in stack.edge_ports:
            for tier in ("high", "low"):
                pools.append(ViewerPool(f"ws://127.0.0.1:{port}/ws/demo", 1, tier=tier).start())
        try:
            wait_until("a viewer per tier per replica", lambda: all(p.connected() for p in pools), 60)
            time.sleep(2.0)  # steady state before the window
            published0 = sum(_metric(stack.inference_port, "framecast_inference_published_frames_total").values())
            (out0, cpu0), t0 = _redis_out(client), time.monotonic()
            time.sleep(seconds)
            (out1, cpu1), t1 = _redis_out(client), time.monotonic()
            published1 = sum(_metric(stack.inference_port, "framecast_inference_published_frames_total").values())
            sizes = _encoded_bytes(stack.inference_port)
        finally:
            for p in pools:
                p.stop()
        wall = t1 - t0
        fps = (published1 - published0) / wall / len(sizes)  # per tier
        measured = (out1 - out0) / wall
        predicted = fps * sum(sizes.values()) * replicas
        return {"replicas": replicas, "tiers_read": sorted(sizes), "fps": round(fps, 2),
                "bytes_per_frame": {k: round(v) for k, v in sizes.items()},
                "predicted_egress_mbit_s": round(predicted * 8 / 1e6, 2),
                "measured_egress_mbit_s": round(measured * 8 / 1e6, 2),
                "measured_over_predicted": round(measured / predicted, 3) if predicted else None,
                "redis_cpu_cores": round((cpu1 - cpu0) / wall, 3),
                "redis_egress_mbit_per_cpu_s": round(measured * 8 / 1e6 / ((cpu1 - cpu0) / wall), 0)
                if cpu1 > cpu0 else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="1,10,25,50", help="viewer counts for the per-core experiment")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per step (max 60)")
    parser.add_argument("--replicas", default="3", help="edge replica counts for the Redis egress experiment")
    parser.add_argument("--out", type=Path, default=Path("tests/artifacts/capacity.json"))
    args = parser.parse_args(argv)
    seconds = min(args.seconds, 60.0)
    result = {"machine": {"cpus": psutil.cpu_count(), "python": platform.python_version(),
                          "cpu": platform.processor() or platform.machine()},
              "inference": INFERENCE,
              "viewers_per_core": viewers_per_core([int(v) for v in args.viewers.split(",")], seconds),
              "redis_egress": [redis_egress(int(r), seconds) for r in args.replicas.split(",")]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["redis_egress"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
