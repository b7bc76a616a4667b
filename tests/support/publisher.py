"""A frame publisher standing in for the inference service: real JPEGs of every tier of a ladder, published
to the bus at a steady rate from a thread (edge tests and edge benches)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from framecast.bus import BusPublisher, Keys, StreamInfo, now_us, sync_client
from framecast.protocol import FrameHeader, TierInfo, encode_frame

# name, width, height, quality
LADDER = (("high", 960, 540, 85), ("medium", 640, 360, 70), ("low", 320, 180, 50))


def make_jpegs(width: int, height: int, quality: int, n: int = 4, seed: int = 0) -> list[bytes]:
    """Real JPEGs with some texture so their sizes resemble camera frames."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img: Any = np.zeros((height, width, 3), np.uint8)
        img[:] = (40 + 30 * i, 80, 160)
        noise = rng.integers(0, 60, (height // 8, width // 8, 3), dtype=np.uint8)
        img = cv2.add(img, cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR))
        cv2.putText(img, f"frame {i}", (20, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        out.append(buf.tobytes())
    return out


@dataclass
class Publisher:
    """Publishes every tier of a stream at `fps` from a thread (a stand-in for the inference service)."""

    url: str
    stream: str = "demo"
    fps: float = 30.0
    ladder: tuple[tuple[str, int, int, int], ...] = LADDER
    prefix: str = "framecast:"
    maxlen: int = 8
    frame_id: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    paused: threading.Event = field(default_factory=threading.Event)
    published: int = 0

    def __post_init__(self) -> None:
        self.jpegs = {name: make_jpegs(w, h, q) for name, w, h, q in self.ladder}
        self.client = sync_client(self.url)
        self.pub = BusPublisher(self.client, self.stream, keys=Keys(self.prefix), maxlen=self.maxlen)
        self.info = StreamInfo(stream=self.stream, fps=self.fps, model="test", device="cpu", source="test",
                               tiers=tuple(TierInfo(name=n, width=w, height=h, quality=q, codec="jpeg")
                                           for n, w, h, q in self.ladder), started_us=now_us())

    def publish_one(self) -> None:
        self.frame_id += 1
        cap = now_us()
        msgs = {}
        for idx, (name, w, h, q) in enumerate(self.ladder):
            payload = self.jpegs[name][self.frame_id % len(self.jpegs[name])]
            msgs[name] = encode_frame(FrameHeader(frame_id=self.frame_id, capture_us=cap, width=w, height=h,
                                                  tier=idx, quality=q, publish_us=now_us()), payload)
        self.pub.publish(msgs, cap)
        self.published += 1

    def announce(self) -> None:
        self.pub.heartbeat(self.info)

    def _run(self) -> None:
        period = 1.0 / self.fps
        next_t = time.monotonic()
        last_meta = 0.0
        while not self.stop_event.is_set():
            now = time.monotonic()
            if now - last_meta > 1.0:
                self.announce()
                last_meta = now
            if not self.paused.is_set():
                self.publish_one()
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                self.stop_event.wait(delay)
            else:
                next_t = time.monotonic()

    def start(self) -> Publisher:
        self.announce()
        self.publish_one()
        self.thread = threading.Thread(target=self._run, daemon=True, name="test-publisher")
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(5)
        self.client.close()
