"""H.264 tier vs the best JPEG tier through the real framecast stack, same run.

``python -m bench.video_stack [--link 8:50] [--seconds 15]`` starts an embedded Valkey, the
inference service (1280x720/30 fps bench scene, ladder ``--tiers``) and the edge, then runs two
viewers one after the other against the same processes: one offering ``h264`` (gets the video
tier) and one offering only ``jpeg`` (auto tier among the JPEG tiers). With ``--link RATE:RTT``
the viewers run inside an emulated link (bench.linkemu: tbf bottleneck + delay relay).
Prints one JSON object: per viewer FPS, bytes/frame, kbit/s, latency p50/p95 (capture to
arrival), tiers seen; H.264 frames are decoded with PyAV after the run and decode errors counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_TIERS = "video=1280x720@h264:2500k,high=1280x720@85,mid=1280x720@70,low=640x360@60"
SCENE_MODEL = "bench.framecast_scene_model:factory"
REPO = Path(__file__).resolve().parents[1]


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def _view(url: str, codecs: list[str], seconds: float, warmup: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from framecast import constants as C
    from framecast.bus import now_us
    from framecast.protocol import Ack, ClientHello, decode_frame, encode_control

    dec: Any = None
    if "h264" in codecs:
        from framecast.video.decode import H264Decoder

        dec = H264Decoder()
    rows: list[tuple[float, int, float, str, bool]] = []  # t, bytes, latency ms, tier, keyframe
    video: list[tuple[bytes, bool]] = []
    hello: dict[str, Any] = {}
    start = time.monotonic()
    async with connect(url, compression=None, max_size=32 << 20, open_timeout=20) as ws:
        await ws.send(encode_control(ClientHello(codecs=tuple(codecs))))
        while (now := time.monotonic()) < start + warmup + seconds:
            try:
                msg = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            if isinstance(msg, str):
                obj = json.loads(msg)
                if obj.get("type") == "hello" and not hello:
                    hello = obj
                continue
            f = decode_frame(msg)
            lat = (now_us() - f.header.capture_us) / 1000
            if dec is not None and f.header.codec == C.CODEC_H264:
                video.append((f.payload, f.header.keyframe))  # decoded after the run: no viewer CPU in the loop
            names = [t["name"] for t in hello.get("tiers", [])]
            tier = names[f.header.tier] if f.header.tier < len(names) else str(f.header.tier)
            await ws.send(encode_control(Ack(f.header.frame_id)))
            if now - start >= warmup:
                rows.append((now, len(msg), lat, tier, f.header.keyframe))
    for payload, key in video:
        dec.decode(payload, key)
    n = len(rows)
    total = sum(r[1] for r in rows)
    tiers: dict[str, int] = {}
    for r in rows:
        tiers[r[3]] = tiers.get(r[3], 0) + 1
    return {"codecs": codecs, "frames": n, "fps": round(n / seconds, 1),
            "bytes_per_frame": round(total / n) if n else None, "kbit_s": round(total * 8 / 1000 / seconds),
            "latency_p50_ms": round(_pct([r[2] for r in rows], 50), 1),
            "latency_p95_ms": round(_pct([r[2] for r in rows], 95), 1),
            "keyframes": sum(r[4] for r in rows), "tiers": tiers,
            "decode_errors": dec.errors if dec is not None else None,
            "tier_codecs": {t["name"]: t["codec"] for t in hello.get("tiers", [])}}


def _wait(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a service exited early")
        try:
            with urllib.request.urlopen(url + "/streams", timeout=2) as resp:
                if any(s.get("live") for s in json.loads(resp.read()).get("streams", [])):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("stream not live")


def _inference_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiers", default=DEFAULT_TIERS)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--link", default="", help="RATE_MBIT:RTT_MS, e.g. 8:50 (needs root, ip, tc)")
    ap.add_argument("--viewer", nargs=2, metavar=("URL", "CODECS"), help=argparse.SUPPRESS)
    ap.add_argument("--log", default="/tmp/framecast-video-stack.log")
    args = ap.parse_args()
    if args.viewer:  # one viewer (run inside the link's namespace)
        print(json.dumps(asyncio.run(_view(args.viewer[0], args.viewer[1].split(","), args.seconds, args.warmup))))
        return

    from framecast.embedded import EmbeddedRedis, free_port

    link: Any = None
    host = "127.0.0.1"
    if args.link:
        from bench.linkemu import EmulatedLink, LinkSpec

        rate, rtt = (float(x) for x in args.link.split(":"))
        link = EmulatedLink(LinkSpec(rate, rtt)).__enter__()
        host = link.host_addr
    results: dict[str, Any] = {"tiers": args.tiers, "link": args.link or "loopback", "seconds": args.seconds}
    with EmbeddedRedis(maxmemory="256mb") as redis, open(args.log, "wb") as log:
        env = {**os.environ, "FRAMECAST_REDIS_URL": redis.url}
        port = free_port(host) if args.link else free_port()
        procs = [subprocess.Popen([sys.executable, "-m", "framecast.inference", "--model", SCENE_MODEL,
                                   "--tiers", args.tiers, "--metrics-port", "0"],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO),
                 subprocess.Popen([sys.executable, "-m", "framecast.edge", "--host", host, "--port", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)]
        try:
            _wait(f"http://{host}:{port}", procs)
            for label, codecs in (("video", "h264,jpeg"), ("jpeg", "jpeg")):
                argv = [sys.executable, "-m", "bench.video_stack", "--seconds", str(args.seconds),
                        "--warmup", str(args.warmup), "--viewer"]
                if link is not None:
                    relay = link.start_relay(port, Path(args.log + f".relay-{label}"), args.seconds + 60)
                    argv = link.ns_argv([*argv, f"ws://127.0.0.1:{relay}/ws/demo", codecs])
                else:
                    argv = [*argv, f"ws://{host}:{port}/ws/demo", codecs]
                cpu0, t0 = _inference_cpu(procs[0].pid), time.monotonic()
                out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                                     timeout=args.seconds + args.warmup + 60)
                cpu = (_inference_cpu(procs[0].pid) - cpu0) / (time.monotonic() - t0)
                if out.returncode != 0:
                    raise SystemExit(f"viewer failed: {out.stderr[-2000:]}")
                results[label] = {**json.loads(out.stdout.strip().splitlines()[-1]),
                                  "inference_cpu_cores": round(cpu, 2)}
        finally:
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            if link is not None:
                link.close()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
