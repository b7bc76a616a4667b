"""H.264 tiers against the JPEG tiers through the real framecast stack, same source, same run.

``python -m bench.video_stack [--link 8:50] [--seconds 15]`` (``make bench`` runs it as the
``video`` suite) starts an embedded Valkey, the inference service (1280x720/30 fps bench
scene, the default ladder: two H.264 tiers, three JPEG tiers) and the edge, then runs the
viewers of `VIEWERS` one after the other against the same processes:

* ``video auto``: offers ``h264,jpeg``, the edge chooses (the browser's default);
* ``jpeg auto``: offers only ``jpeg`` (a viewer without a decoder), the edge chooses;
* ``jpeg 720p q85`` / ``jpeg 720p q70``: JPEG pinned to ``high`` (the best JPEG tier) and to
  ``mid``, the pictures the size of ``video-high``;
* ``video 360p`` / ``jpeg 360p q60``: both pinned to the 640x360 tiers, the same picture.

With ``--link RATE:RTT`` the viewers run inside an emulated link (bench.linkemu: tbf
bottleneck + delay relay). Each viewer acks every frame as it arrives; H.264 frames are
decoded with PyAV after the run and decode errors counted. Latency is capture to arrival (one
host, one clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import linkemu
from bench.metrics import percentile
from bench.procstat import sample

SCENE_MODEL = "bench.framecast_scene_model:factory"
REPO = Path(__file__).resolve().parents[1]
STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
READY_TIMEOUT_S = 90.0
VIEWER_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class Viewer:
    label: str
    codecs: str  # what the hello offers, comma-separated
    tier: str  # "auto" or a tier name to pin


VIEWERS: tuple[Viewer, ...] = (
    Viewer("video auto", "h264,jpeg", "auto"),
    Viewer("jpeg auto", "jpeg", "auto"),
    Viewer("jpeg 720p q85", "jpeg", "high"),
    Viewer("jpeg 720p q70", "jpeg", "mid"),
    Viewer("video 360p", "h264,jpeg", "video-low"),
    Viewer("jpeg 360p q60", "jpeg", "low"),
)
# (video row, JPEG row) pairs compared in the summary: same picture size
COMPARISONS: tuple[tuple[str, str], ...] = (("video auto", "jpeg 720p q85"), ("video auto", "jpeg 720p q70"),
                                            ("video auto", "jpeg auto"), ("video 360p", "jpeg 360p q60"))



async def _view(url: str, codecs: list[str], tier: str, seconds: float, warmup: float) -> dict[str, Any]:
    """One viewer: hello, then ack every frame on arrival; frames after `warmup` are counted."""
    from tests.support.viewer import messages, open_viewer

    from framecast import constants as C
    from framecast.bus import now_us
    from framecast.protocol import Ack, ClientHello, decode_frame, encode_control

    dec: Any = None
    if "h264" in codecs:
        from framecast.codecs.h264_decoder import H264Decoder

        dec = H264Decoder()
    rows: list[tuple[float, int, float, str, bool]] = []  # t, bytes, latency ms, tier, keyframe
    video: list[tuple[bytes, bool]] = []
    hello: dict[str, Any] = {}
    first_frame_ms: float | None = None
    start = time.monotonic()
    async with open_viewer(url, open_timeout=20) as ws:
        await ws.send(encode_control(ClientHello(codecs=tuple(codecs), tier=tier, client_id="bench-video")))
        async for now, msg in messages(ws, start + warmup + seconds):
            if isinstance(msg, dict):
                if msg.get("type") == "hello" and not hello:
                    hello = msg
                continue
            f = decode_frame(msg)
            if first_frame_ms is None:
                first_frame_ms = (now - start) * 1000
            lat = (now_us() - f.header.capture_us) / 1000
            if dec is not None and f.header.codec == C.CODEC_H264:
                video.append((f.payload, f.header.keyframe))  # decoded after the run: no viewer CPU in the loop
            names = [t["name"] for t in hello.get("tiers", [])]
            name = names[f.header.tier] if f.header.tier < len(names) else str(f.header.tier)
            await ws.send(encode_control(Ack(f.header.frame_id)))
            if now - start >= warmup:
                rows.append((now, len(msg), lat, name, f.header.keyframe))
    for payload, key in video:
        dec.decode(payload, key)
    n = len(rows)
    total = sum(r[1] for r in rows)
    tiers: dict[str, int] = {}
    for r in rows:
        tiers[r[3]] = tiers.get(r[3], 0) + 1
    p50, p95 = percentile([r[2] for r in rows], 50), percentile([r[2] for r in rows], 95)
    return {"codecs": codecs, "tier_choice": tier, "frames": n, "fps": round(n / seconds, 1),
            "bytes_per_frame": round(total / n) if n else None, "kbit_s": round(total * 8 / 1000 / seconds),
            "latency_p50_ms": None if p50 is None else round(p50, 1),
            "latency_p95_ms": None if p95 is None else round(p95, 1),
            "first_frame_ms": None if first_frame_ms is None else round(first_frame_ms, 1),
            "keyframes": sum(r[4] for r in rows), "tiers": tiers,
            "decode_errors": dec.errors if dec is not None else None,
            "tier_codecs": {t["name"]: t["codec"] for t in hello.get("tiers", [])}}


@contextlib.contextmanager
def _stack(host: str, log_dir: Path, tiers: str | None) -> Iterator[tuple[int, list[int]]]:
    """Embedded Valkey, inference (bench scene) and edge as real processes (tests/support's stack launcher);
    yields (edge port, [inference pid, edge pid])."""
    from tests.support.stack import stack_running

    inference = ["--model", SCENE_MODEL, "--metrics-port", "0", *(["--tiers", tiers] if tiers else [])]
    with stack_running(log_dir, inference_args=inference, maxmemory="256mb", host=host,
                       timeout=READY_TIMEOUT_S) as stack:
        assert stack.inference is not None and stack.edge is not None
        yield stack.port, [stack.inference.pid, stack.edge.pid]


def run_video_suite(link: tuple[float, float] | None, seconds: float, warmup: float, workdir: Path,
                    viewers: tuple[Viewer, ...] = VIEWERS, tiers: str | None = None) -> dict[str, Any]:
    """Run every viewer against one stack; returns the suite's rows and the side-by-side ratios."""
    scenario = "loopback" if link is None else f"{link[0]:g}mbit-{link[1]:g}ms"
    doc: dict[str, Any] = {"scenario": scenario, "seconds": seconds, "warmup_s": warmup,
                           "tiers": tiers or "default", "results": [], "comparisons": []}
    reason = linkemu.unavailable_reason() if link is not None else None
    if reason:
        doc["results"] = [{"viewer": v.label, "status": STATUS_SKIPPED, "reason": reason} for v in viewers]
        return doc
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        emu: Any = None
        host = "127.0.0.1"
        if link is not None:
            emu = stack.enter_context(linkemu.EmulatedLink(linkemu.LinkSpec(*link)))
            host = emu.host_addr
        port, pids = stack.enter_context(_stack(host, workdir / "video-stack", tiers))
        for i, v in enumerate(viewers):
            argv = [sys.executable, "-m", "bench.video_stack", "--seconds", str(seconds), "--warmup", str(warmup),
                    "--viewer", v.codecs, v.tier]
            if emu is not None:
                relay = emu.start_relay(port, workdir / f"video-relay-{i}.log", seconds + warmup + VIEWER_GRACE_S)
                argv = emu.ns_argv([*argv, f"ws://127.0.0.1:{relay}/ws/demo"])
            else:
                argv = [*argv, f"ws://{host}:{port}/ws/demo"]
            cpu0 = [sample(pid).cpu_s for pid in pids]
            t0 = time.monotonic()
            out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                                 timeout=seconds + warmup + VIEWER_GRACE_S)
            elapsed = time.monotonic() - t0
            cpu = [(sample(pid).cpu_s - c) / elapsed for pid, c in zip(pids, cpu0, strict=True)]
            row: dict[str, Any] = {"viewer": v.label, "status": STATUS_OK, "reason": ""}
            if out.returncode != 0:
                row.update(status="failed", reason=out.stderr.strip().splitlines()[-1:] or ["viewer failed"])
            else:
                row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            row.update(inference_cpu_cores=round(cpu[0], 2), edge_cpu_cores=round(cpu[1], 2),
                       host_loadavg_1m=round(os.getloadavg()[0], 2))
            doc["results"].append(row)
    doc["comparisons"] = compare(doc["results"])
    return doc


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Video row against JPEG row: FPS ratio, bytes ratio, latency difference; and whether the issue's target
    (>= 2x the FPS at equal or lower latency, or equal FPS at a quarter of the bytes) is met."""
    by = {r["viewer"]: r for r in rows if r.get("status") == STATUS_OK and r.get("frames")}
    out = []
    for video, jpeg in COMPARISONS:
        if video not in by or jpeg not in by:
            continue
        v, j = by[video], by[jpeg]
        fps_ratio = v["fps"] / j["fps"] if j["fps"] else None
        bytes_ratio = v["bytes_per_frame"] / j["bytes_per_frame"]
        lower_latency = v["latency_p50_ms"] <= j["latency_p50_ms"] and v["latency_p95_ms"] <= j["latency_p95_ms"]
        met = bool(fps_ratio is not None and ((fps_ratio >= 2 and lower_latency)
                                              or (fps_ratio >= 0.95 and bytes_ratio <= 0.25)))
        out.append({"video": video, "jpeg": jpeg, "fps_ratio": None if fps_ratio is None else round(fps_ratio, 2),
                    "bytes_ratio": round(bytes_ratio, 3),
                    "p50_diff_ms": round(v["latency_p50_ms"] - j["latency_p50_ms"], 1),
                    "p95_diff_ms": round(v["latency_p95_ms"] - j["latency_p95_ms"], 1),
                    "target_met": met})
    return out


def _parse_link(text: str) -> tuple[float, float] | None:
    if not text:
        return None
    rate, rtt = (float(x) for x in text.split(":"))
    return rate, rtt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiers", default="", help="ladder for the inference service (default: its default ladder)")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--link", default="", help="RATE_MBIT:RTT_MS, e.g. 8:50 (needs root, ip, tc)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/framecast-video-stack"))
    ap.add_argument("--viewer", nargs=3, metavar=("CODECS", "TIER", "URL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.viewer:  # one viewer (run inside the link's namespace)
        codecs, tier, url = args.viewer
        print(json.dumps(asyncio.run(_view(url, codecs.split(","), tier, args.seconds, args.warmup))))
        return
    doc = run_video_suite(_parse_link(args.link), args.seconds, args.warmup, args.out, tiers=args.tiers or None)
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
