"""Edge behaviour on an emulated link (not a test; needs root): per-2-second FPS, tiers and latency.

    python -m bench.edge_link RATE_MBIT RTT_MS SECONDS ["--edge flags"] [--plain]

Uses bench.linkemu (netns + veth + tbf bottleneck facing the edge's socket + delay relay), the test
publisher (JPEG ladder high 1280x720 q85 / mid 1280x720 q70 / low 640x360 q60 at 30 fps) and a
`websockets` viewer inside the namespace that acks every frame on arrival (with --plain: a viewer that sends
nothing, no hello and no acks, as the seed's client).
"""

from __future__ import annotations

import asyncio
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LADDER = (("high", 1280, 720, 85), ("mid", 1280, 720, 70), ("low", 640, 360, 60))


def client_main(url: str, seconds: float, out: str, plain: bool) -> None:
    from tests.support.viewer import ViewerClient

    v = asyncio.run(ViewerClient(url, ack=not plain).run(seconds))
    Path(out).write_text(json.dumps({"frames": v.frames, "controls": v.controls, "close": v.close_code}))


def main(rate: float, rtt: float, seconds: float, extra: list[str], plain: bool) -> None:
    import httpx
    from tests.support.metrics import metric
    from tests.support.procs import edge_service, service_port, wait_http
    from tests.support.publisher import Publisher

    from bench.linkemu import EmulatedLink, LinkSpec
    from framecast.dev.embedded import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="edge-link-"))
    out = tmp / "frames.json"
    with EmbeddedRedis() as redis_server, EmulatedLink(LinkSpec(rate, rtt)) as link:
        pub = Publisher(redis_server.url, ladder=LADDER, fps=30).start()
        edge = edge_service(redis_server.url, "--log-level", "warning", *extra, host=link.host_addr)
        edge.start(tmp)
        port = service_port(edge)
        base = f"http://{link.host_addr}:{port}"
        wait_http(base + "/healthz", 30, edge)
        relay_port = link.start_relay(port, tmp / "relay.log", seconds + 30)
        subprocess.run(link.ns_argv([sys.executable, "-m", "bench.edge_link", "--client",
                                     f"ws://127.0.0.1:{relay_port}/ws/demo", str(seconds), str(out),
                                     *(["--plain"] if plain else [])]),
                       timeout=seconds + 30, check=True, cwd=ROOT)
        metrics = httpx.get(base + "/metrics").text
        edge.stop()
        pub.stop()
    data = json.loads(out.read_text())
    frames = data["frames"]
    offset = time.time() - time.monotonic()  # CLOCK_MONOTONIC is shared by the processes of one host
    t0 = frames[0][3]
    print(f"link {rate:g} Mbit/s, RTT {rtt:g} ms; JPEG sizes", {n: len(j[0]) for n, j in pub.jpegs.items()})
    print("tier changes:", [(c["tier"], c["reason"]) for c in data["controls"] if c["type"] == "tier"])
    lat_all = sorted((f[3] + offset) * 1000 - f[1] / 1000 for f in frames if f[3] - t0 >= 2)
    if lat_all:
        print(f"after 2 s: fps {len(lat_all) / (seconds - 2):.1f} p50 {lat_all[len(lat_all) // 2]:.0f} ms "
              f"p95 {lat_all[int(len(lat_all) * 0.95)]:.0f} ms")
    for w in range(0, int(seconds), 2):
        sel = [f for f in frames if w <= f[3] - t0 < w + 2]
        if not sel:
            continue
        lat = sorted((f[3] + offset) * 1000 - f[1] / 1000 for f in sel)
        print(f"{w:3d}s fps {len(sel) / 2:5.1f} tiers {dict(collections.Counter(f[2] for f in sel))} "
              f"p50 {lat[len(lat) // 2]:5.0f} ms p95 {lat[int(len(lat) * 0.95)]:5.0f} ms "
              f"{statistics.mean(f[4] for f in sel) / 1000:5.1f} KB/frame")
    print("drops", {k: metric(metrics, "framecast_edge_frames_dropped_total", reason=k)
                    for k in ("queue_full", "stale", "tier_switch")})


if __name__ == "__main__":
    plain_viewer = "--plain" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--plain"]
    if args[0] == "--client":
        client_main(args[1], float(args[2]), args[3], plain_viewer)
    else:
        main(float(args[0]), float(args[1]), float(args[2]), args[3].split() if len(args) > 3 else [], plain_viewer)
