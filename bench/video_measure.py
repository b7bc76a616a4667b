"""Measure H.264 against JPEG on the same moving 720p scene: bytes/frame, ms/frame, GIL release.

    python -m bench.video_measure                 # 1280x720, 90 frames, 3 bitrates + CRF 23, JPEG q70
    python -m bench.video_measure --json out.json --frames 150 --bitrates 1000k,2500k,5000k

The scene is synthetic (numpy): a drifting colour gradient, moving blocks and
a fresh film-grain field per frame (noise is what makes inter frames cost).
JPEG is simplejpeg at quality 70 from the same BGR frames. Every figure is
measured here, on this machine, now; nothing is assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from framecast.codecs.h264_decoder import H264Decoder
from framecast.codecs.h264_encoder import H264Encoder
from framecast.ladder import parse_bitrate

Image = npt.NDArray[np.uint8]


class MovingScene:
    """Deterministic moving, slightly noisy BGR scene; `frame(n)` costs ~5 ms at 720p."""

    def __init__(self, width: int = 1280, height: int = 720, noise_sigma: float = 4.0, noise_bank: int = 16,
                 seed: int = 7) -> None:
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        self._noise = [rng.normal(0, noise_sigma, (height, width, 1)).astype(np.int16) for _ in range(noise_bank)]
        self._x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
        self._y = np.linspace(0, 1, height, dtype=np.float32)[:, None]

    def frame(self, n: int) -> Image:
        t = n / 30.0
        b = 127 + 100 * np.sin(2 * np.pi * (self._x + 0.1 * t)) + 0 * self._y
        g = 127 + 100 * np.sin(2 * np.pi * (1.5 * self._y - 0.07 * t)) + 0 * self._x
        r = 127 + 100 * np.cos(2 * np.pi * (self._x + self._y + 0.05 * t))
        img = np.stack([b, g, r], axis=-1).astype(np.int16)
        for i in range(5):  # moving blocks with hard edges
            cx = int((0.5 + 0.4 * np.sin(t * (0.7 + 0.2 * i) + i)) * self.width)
            cy = int((0.5 + 0.4 * np.cos(t * (0.5 + 0.1 * i) + 2 * i)) * self.height)
            s = 40 + 10 * i
            img[max(0, cy - s):cy + s, max(0, cx - s):cx + s] = (40 * i, 255 - 40 * i, 60 + 30 * i)
        img += self._noise[n % len(self._noise)]
        out: Image = np.clip(img, 0, 255).astype(np.uint8)
        return out


@dataclass
class Result:
    codec: str
    setting: str
    frames: int
    bytes_per_frame: float
    keyframe_bytes: float
    p_frame_bytes: float
    kbit_per_s_at_30fps: float
    encode_ms_mean: float  # wall time
    encode_ms_p95: float
    encode_cpu_ms: float  # CPU time of this process per frame (all x264 threads): robust to a loaded machine
    psnr_db: float


def _psnr(a: Image, b: Image) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


def measure_h264(frames: list[Image], *, bitrate: int | None, crf: int | None, threads: int,
                 keyframe_interval_s: float = 2.0, fps: float = 30.0, vbv_s: float = 0.25) -> Result:
    h, w = frames[0].shape[:2]
    enc = H264Encoder(w, h, bitrate=bitrate, crf=crf, fps=fps, keyframe_interval_s=keyframe_interval_s,
                      input_format="bgr24", threads=threads, vbv_s=vbv_s)
    dec = H264Decoder()
    sizes: list[int] = []
    keys: list[int] = []
    deltas: list[int] = []
    times: list[float] = []
    psnrs: list[float] = []
    cpu = 0.0
    for i, img in enumerate(frames):
        c0 = time.process_time()
        out = enc.encode(img, now=i / fps)
        cpu += time.process_time() - c0
        sizes.append(len(out.data))
        (keys if out.keyframe else deltas).append(len(out.data))
        times.append(out.encode_s * 1000)
        pic = dec.decode(out.data, out.keyframe)
        if pic is not None and i % 10 == 0:
            psnrs.append(_psnr(pic, img))
    setting = f"{bitrate // 1000}k vbv={vbv_s:g}s" if bitrate is not None else f"crf{crf}"
    return Result("h264", f"{setting} thr={threads or 'auto'}", len(frames), statistics.fmean(sizes),
                  statistics.fmean(keys) if keys else 0.0, statistics.fmean(deltas) if deltas else 0.0,
                  statistics.fmean(sizes) * 8 * fps / 1000, statistics.fmean(times),
                  float(np.percentile(times, 95)), cpu / len(frames) * 1000, statistics.fmean(psnrs))


def measure_jpeg(frames: list[Image], quality: int = 70, fps: float = 30.0) -> Result:
    import simplejpeg

    sizes: list[int] = []
    times: list[float] = []
    psnrs: list[float] = []
    cpu = 0.0
    for i, img in enumerate(frames):
        t0, c0 = time.perf_counter(), time.process_time()
        data = simplejpeg.encode_jpeg(img, quality=quality, colorspace="BGR", colorsubsampling="420")
        cpu += time.process_time() - c0
        times.append((time.perf_counter() - t0) * 1000)
        sizes.append(len(data))
        if i % 10 == 0:
            psnrs.append(_psnr(simplejpeg.decode_jpeg(data, colorspace="BGR"), img))
    mean = statistics.fmean(sizes)
    return Result("jpeg", f"q{quality}", len(frames), mean, mean, mean, mean * 8 * fps / 1000,
                  statistics.fmean(times), float(np.percentile(times, 95)), cpu / len(frames) * 1000,
                  statistics.fmean(psnrs))


def _spin_rate(stop: threading.Event) -> Callable[[], int]:
    """A pure-Python counter in a thread: it only advances while it can hold the GIL."""
    count = [0]

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    threading.Thread(target=spin, daemon=True).start()
    return lambda: count[0]


def gil_share(frames: list[Image], bitrate: int, threads: int = 1, seconds: float = 1.5) -> dict[str, float]:
    """How much a pure-Python thread still runs while another thread encodes (1.0 = not slowed at all).

    With one x264 thread and two cores, an encoder that released the GIL leaves the spinning
    thread a whole core; one that held it would starve the spinner for the encode time.
    """
    h, w = frames[0].shape[:2]
    enc = H264Encoder(w, h, bitrate=bitrate, input_format="bgr24", threads=threads)
    stop = threading.Event()
    read = _spin_rate(stop)
    time.sleep(0.1)  # let the spinner get going
    a, t0 = read(), time.perf_counter()
    time.sleep(seconds)
    solo = (read() - a) / (time.perf_counter() - t0)
    a, t0 = read(), time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        enc.encode(frames[n % len(frames)])
        n += 1
    elapsed = time.perf_counter() - t0
    during = (read() - a) / elapsed
    stop.set()
    return {"spinner_share_while_encoding": during / solo, "encode_ms_with_spinner": elapsed / n * 1000}


def parallel_speedup(frames: list[Image], bitrate: int, n_encoders: int = 2, threads: int = 1) -> dict[str, float]:
    """Frames/s of `n_encoders` tiers encoded sequentially in one thread vs one thread per tier."""
    h, w = frames[0].shape[:2]

    def run(parallel: bool) -> float:
        encs = [H264Encoder(w, h, bitrate=bitrate, input_format="bgr24", threads=threads)
                for _ in range(n_encoders)]
        count = min(len(frames), 60)
        t0 = time.perf_counter()
        if parallel:
            workers = [threading.Thread(target=lambda e=e: [e.encode(frames[i]) for i in range(count)])
                       for e in encs]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
        else:
            for i in range(count):
                for e in encs:
                    e.encode(frames[i])
        return count * n_encoders / (time.perf_counter() - t0)

    seq, par = run(False), run(True)
    return {"sequential_fps": seq, "parallel_fps": par, "speedup": par / seq}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.video_measure", description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--bitrates", default="1000k,2500k,5000k")
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--threads", type=int, default=0, help="x264 threads (0: x264's choice)")
    ap.add_argument("--scene", choices=["numpy", "bench"], default="numpy",
                    help="numpy: MovingScene here; bench: bench/scene.py of `make bench`")
    ap.add_argument("--json", default="", help="also write the results to this file")
    args = ap.parse_args(argv)
    if args.scene == "bench":
        from bench.scene import SceneRenderer

        renderer = SceneRenderer(args.width, args.height)
        frames = [renderer.render(i) for i in range(args.frames)]
    else:
        scene = MovingScene(args.width, args.height)
        frames = [scene.frame(i) for i in range(args.frames)]
    results = [measure_jpeg(frames)]
    for text in args.bitrates.split(","):
        results.append(measure_h264(frames, bitrate=parse_bitrate(text), crf=None, threads=args.threads))
    results.append(measure_h264(frames, bitrate=None, crf=args.crf, threads=args.threads))
    second = parse_bitrate(args.bitrates.split(",")[1 if "," in args.bitrates else 0])
    results.append(measure_h264(frames, bitrate=second, crf=None, threads=1))
    results += [measure_h264(frames, bitrate=second, crf=None, threads=args.threads, vbv_s=v) for v in (0.5, 1.0)]
    print(f"{args.scene} scene {args.width}x{args.height}, {args.frames} frames, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'codec':6} {'setting':26} {'B/frame':>9} {'key B':>8} {'P B':>8} {'kbit/s@30':>10} {'ms mean':>8} "
          f"{'ms p95':>7} {'CPU ms':>7} {'PSNR dB':>8}")
    for r in results:
        print(f"{r.codec:6} {r.setting:26} {r.bytes_per_frame:9.0f} {r.keyframe_bytes:8.0f} {r.p_frame_bytes:8.0f} "
              f"{r.kbit_per_s_at_30fps:10.0f} {r.encode_ms_mean:8.2f} {r.encode_ms_p95:7.2f} {r.encode_cpu_ms:7.2f} "
              f"{r.psnr_db:8.2f}")
    mid = parse_bitrate(args.bitrates.split(",")[0])
    gil = gil_share(frames, mid)
    par = parallel_speedup(frames, mid)
    print(f"GIL: a pure-Python thread keeps {gil['spinner_share_while_encoding']:.0%} of its speed while another "
          f"thread encodes ({gil['encode_ms_with_spinner']:.1f} ms/frame, 1 x264 thread)")
    print(f"2 tiers, 1 x264 thread each: {par['sequential_fps']:.1f} frames/s sequential, "
          f"{par['parallel_fps']:.1f} in 2 threads (x{par['speedup']:.2f})")
    if args.json:
        out: dict[str, Any] = {"scene": args.scene, "load": os.getloadavg()[0], "width": args.width,
                               "height": args.height, "frames": args.frames,
                               "cpus": os.cpu_count(), "results": [asdict(r) for r in results], "gil": gil,
                               "parallel": par}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
