"""How many bytes of frames one redis-server process moves: the ceiling behind "when to move to a cluster".

Bounded runs of Debian's `redis-benchmark` against one Debian `redis-server` on
loopback (no persistence, as the bus runs), for frame entries of a few sizes:

- **XADD** (what the inference services do): entries/s, ingest bytes/s;
- **newest-entry reads** (what each edge replica's bus reader does for every
  frame: `XREVRANGE key + - COUNT 1` returns the same bytes as the XREAD
  BLOCK that follows a stream), with 20 concurrent readers: entries/s and
  egress bytes/s, from Redis' own `total_net_output_bytes`.

Redis' own CPU time (`INFO used_cpu_user + used_cpu_sys`) is read around each
run, so the figures are also given per Redis CPU-second: on a machine shared
with the benchmark client (and here with other work) wall-clock rates
understate what a dedicated core does, CPU-second rates do not.

    .venv/bin/python -m tools.redis_ceiling     # ~30 s; prints a table, writes tests/artifacts/redis_ceiling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from framecast.dev.embedded import EmbeddedRedis

ARTIFACT = Path(__file__).resolve().parents[1] / "tests" / "artifacts" / "redis_ceiling.json"
# JPEG 720p high / 360p low, and H.264 video-high, as measured in docs/operations.md
SIZES = (115_000, 25_000, 10_400)


def _counters(client: redis.Redis) -> tuple[float, int, int]:
    info = client.info()
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"]), int(info["total_net_output_bytes"]),
            int(info["total_net_input_bytes"]))


def _bench(port: int, clients: int, requests: int, *command: str) -> float:
    """Run redis-benchmark with a custom command; returns its requests per second."""
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(clients), "-n", str(requests), "--csv",
                          *command], capture_output=True, text=True, check=True, timeout=120)
    last = out.stdout.strip().splitlines()[-1]
    return float(last.split('","')[1])  # "test","rps",...: the test name echoes the payload, so split on quotes


def measure(size: int, *, seconds: float = 3.0, readers: int = 20) -> dict[str, Any]:
    with EmbeddedRedis(binary=shutil.which("redis-server") or "redis-server", maxmemory="1gb") as server:
        client = redis.Redis(port=server.port)
        payload = "x" * size
        key = "framecast:{bench}:frames:high"
        # a short probe sizes each run to about `seconds` on this machine
        probe = _bench(server.port, 4, 200, "XADD", key, "MAXLEN", "~", "60", "*", "m", payload)
        n_add = max(500, int(probe * seconds))
        cpu0, _, in0 = _counters(client)
        t0 = time.monotonic()
        add_rps = _bench(server.port, 4, n_add, "XADD", key, "MAXLEN", "~", "60", "*", "m", payload)
        wall_add = time.monotonic() - t0
        cpu1, out1, in1 = _counters(client)
        probe = _bench(server.port, readers, 200, "XREVRANGE", key, "+", "-", "COUNT", "1")
        n_read = max(1000, int(probe * seconds))
        t0 = time.monotonic()
        read_rps = _bench(server.port, readers, n_read, "XREVRANGE", key, "+", "-", "COUNT", "1")
        wall_read = time.monotonic() - t0
        cpu2, out2, _ = _counters(client)
        client.close()
    return {
        "entry_bytes": size,
        "xadd": {"clients": 4, "entries": n_add, "entries_per_s": round(add_rps),
                 "ingest_gbit_s": round((in1 - in0) * 8 / wall_add / 1e9, 2),
                 "redis_cpu_s": round(cpu1 - cpu0, 2),
                 "ingest_gbit_per_redis_cpu_s": round((in1 - in0) * 8 / max(1e-6, cpu1 - cpu0) / 1e9, 2)},
        "read_newest": {"clients": readers, "entries": n_read, "entries_per_s": round(read_rps),
                        "egress_gbit_s": round((out2 - out1) * 8 / wall_read / 1e9, 2),
                        "redis_cpu_s": round(cpu2 - cpu1, 2),
                        "egress_gbit_per_redis_cpu_s": round((out2 - out1) * 8 / max(1e-6, cpu2 - cpu1) / 1e9, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="target length of each run")
    args = parser.parse_args()
    if shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None:
        raise SystemExit("needs Debian's redis-server and redis-tools (redis-benchmark)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    rows = [measure(size, seconds=args.seconds) for size in SIZES]
    result = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
              "redis": version, "command": "python -m tools.redis_ceiling", "rows": rows}
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(result, indent=2))
    print(f"{result['at']} commit {commit}, redis {version}")
    print("| entry | XADD entries/s | ingest Gbit/s | reads entries/s (20 readers) | egress Gbit/s "
          "| egress Gbit/s per Redis CPU-second |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["xadd"], r["read_newest"]
        print(f"| {r['entry_bytes'] / 1000:.1f} KB | {a['entries_per_s']:,} | {a['ingest_gbit_s']} | "
              f"{b['entries_per_s']:,} | {b['egress_gbit_s']} | {b['egress_gbit_per_redis_cpu_s']} |")


if __name__ == "__main__":
    main()
