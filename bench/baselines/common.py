"""Pieces shared by the two seed baselines: frame producer, capture log, CLI.

The producer thread stands in for the seed's model thread: it renders the
shared synthetic scene at 30 fps and hands every frame (id, capture time,
image) to each connected client's writer, in the producer thread, as the seed
did.  Capture times are also kept per frame id so the bench can measure
latency exactly: the seed header stores its timestamp as a float32.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import uvicorn
from fastapi import FastAPI

from bench.constants import CAPTURES_PATH, STATS_PATH
from bench.procstat import sample
from bench.scene import FPS, Frame, SceneRenderer

FrameSink = Callable[[int, float, Frame], None]

CAPTURE_RING_SIZE = 1 << 16
RESYNC_AFTER_FRAMES = 2
STOP_JOIN_TIMEOUT_S = 2.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class CaptureLog:
    """Capture time (time.time()) per frame id, in a fixed ring."""

    _times: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.full(CAPTURE_RING_SIZE, np.nan, dtype=np.float64)
    )
    _ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.full(CAPTURE_RING_SIZE, -1, dtype=np.int64))

    def record(self, frame_id: int, capture_s: float) -> None:
        slot = frame_id % CAPTURE_RING_SIZE
        self._times[slot] = capture_s
        self._ids[slot] = frame_id

    def lookup(self, first_id: int, last_id: int) -> dict[int, float]:
        """Capture times for ids in [first_id, last_id] still in the ring."""
        out: dict[int, float] = {}
        for frame_id in range(max(first_id, last_id - CAPTURE_RING_SIZE + 1), last_id + 1):
            slot = frame_id % CAPTURE_RING_SIZE
            if self._ids[slot] == frame_id:
                out[frame_id] = float(self._times[slot])
        return out


class FrameProducer:
    """Renders the scene at 30 fps in a thread and fans frames out to sinks."""

    def __init__(self, fps: float = FPS) -> None:
        self._interval = 1.0 / fps
        self._renderer = SceneRenderer()
        self._sinks: dict[str, FrameSink] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-producer", daemon=True)
        self.captures = CaptureLog()
        self.frames_produced = 0
        self.producer_cpu_s = 0.0

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def add_sink(self, key: str, sink: FrameSink) -> None:
        with self._lock:
            self._sinks[key] = sink

    def remove_sink(self, key: str) -> None:
        with self._lock:
            self._sinks.pop(key, None)

    def sink_keys(self) -> set[str]:
        with self._lock:
            return set(self._sinks)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_JOIN_TIMEOUT_S)

    def _run(self) -> None:
        frame_id = 0
        deadline = time.monotonic()
        while not self._stop.is_set():
            cpu_start = time.thread_time()
            capture_s = time.time()
            image = self._renderer.render(frame_id)
            self.captures.record(frame_id, capture_s)
            with self._lock:
                sinks = list(self._sinks.values())
            for sink in sinks:
                sink(frame_id, capture_s, image)
            self.frames_produced += 1
            frame_id += 1
            self.producer_cpu_s += time.thread_time() - cpu_start
            deadline += self._interval
            delay = deadline - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif -delay > RESYNC_AFTER_FRAMES * self._interval:
                deadline = time.monotonic()


def add_bench_routes(app: FastAPI, producer: FrameProducer, counters: dict[str, int]) -> None:
    """Expose producer statistics and capture times to the harness (not per frame)."""

    @app.get(STATS_PATH)
    async def stats() -> dict[str, float | int]:
        proc = sample(os.getpid())
        return {
            "frames_produced": producer.frames_produced,
            "producer_cpu_s": producer.producer_cpu_s,
            "process_cpu_s": proc.cpu_s,
            "rss_bytes": proc.rss_bytes,
            **counters,
        }

    @app.get(CAPTURES_PATH)
    async def captures(first: int, last: int) -> dict[str, float]:
        return {str(k): v for k, v in producer.captures.lookup(first, last).items()}


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    return parser.parse_args(argv)


def configure_logging() -> None:
    """Log to stderr like the seed's console server (the harness redirects it)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run uvicorn with its DEFAULT settings (auto ws, permessage-deflate on)."""
    uvicorn.run(app, host=host, port=port)
