"""Fixtures for edge integration tests: real Valkey, a real edge process, a small frame publisher."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from framecast.bus import BusPublisher, Keys, StreamInfo, now_us, sync_client
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import FrameHeader, TierInfo, encode_frame
from tests.support.procs import Service, edge_service, service_port, wait_http
from tests.support.timing import scaled

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


@dataclass
class EdgeProcess:
    """A real `python -m framecast.edge` on a free port (tests/support's Service), quiet and without a drain delay."""

    redis_url: str
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    service: Service | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.service.proc if self.service is not None else None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, stream: str = "demo") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{stream}"

    def start(self, tmp_dir: str = "/tmp") -> EdgeProcess:
        svc = edge_service(self.redis_url, "--log-level", "warning", "--drain-delay-s", "0", *self.extra,
                           port=self.port)
        self.port = service_port(svc)
        svc.name = f"edge-{self.port}"
        svc.env.update(self.env)
        self.service = svc.start(Path(tmp_dir))
        wait_http(self.base + "/healthz", 20, svc)
        return self

    def log(self) -> str:
        return self.service.log()[-4000:] if self.service is not None else ""

    def stop(self, timeout: float = 15) -> int | None:
        return self.service.stop(timeout) if self.service is not None else None

    def metrics(self) -> str:
        return httpx.get(self.base + "/metrics", timeout=5).text


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def publisher(redis_server: EmbeddedRedis) -> Iterator[Publisher]:
    pub = Publisher(redis_server.url).start()
    yield pub
    pub.stop()


@pytest.fixture(scope="session")
def edge(redis_server: EmbeddedRedis, publisher: Publisher, tmp_path_factory: Any) -> Iterator[EdgeProcess]:
    proc = EdgeProcess(redis_server.url, extra=["--ack-timeout-s", "3", "--reader-grace-s", "1"]).start(
        str(tmp_path_factory.mktemp("edge")))
    yield proc
    proc.stop()


@dataclass
class ViewerClient:
    """A real `websockets` viewer that records frames and (optionally) acks them."""

    url: str
    ack: bool = True
    ack_delay: float = 0.0  # seconds to wait before acking (a slow link or a slow display)
    hello: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    subprotocols: list[str] | None = None
    frames: list[tuple[int, int, int, float, int]] = field(default_factory=list)  # id, capture, tier, t, bytes
    controls: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    server_hello: dict[str, Any] | None = None
    raw: list[bytes] | None = None  # set to a list to keep every frame message

    async def run(self, duration: float, *, until_frames: int | None = None) -> ViewerClient:
        import json

        import websockets
        from websockets.asyncio.client import connect

        from framecast.protocol import decode_frame

        kwargs: dict[str, Any] = {"compression": None, "max_size": 32 * 1024 * 1024, "open_timeout": scaled(10)}
        if self.headers:
            kwargs["additional_headers"] = self.headers
        if self.subprotocols:
            kwargs["subprotocols"] = self.subprotocols
        deadline = time.monotonic() + scaled(duration)
        try:
            async with connect(self.url, **kwargs) as ws:
                if self.hello is not None:
                    await ws.send(json.dumps({"type": "hello", **self.hello}))
                while time.monotonic() < deadline:
                    try:
                        msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
                    except TimeoutError:
                        break
                    if isinstance(msg, str):
                        obj = json.loads(msg)
                        if obj.get("type") == "hello" and self.server_hello is None:
                            self.server_hello = obj
                        self.controls.append(obj)
                        continue
                    if self.raw is not None:
                        self.raw.append(msg)
                    frame = decode_frame(msg)
                    h = frame.header
                    self.frames.append((h.frame_id, h.capture_us, h.tier, time.monotonic(), len(msg)))
                    if self.ack:
                        if self.ack_delay:
                            await asyncio.sleep(self.ack_delay)
                        await ws.send(json.dumps({"type": "ack", "id": h.frame_id}))
                    if until_frames is not None and len(self.frames) >= until_frames:
                        break
        except websockets.ConnectionClosed as exc:
            if exc.rcvd is not None:
                self.close_code, self.close_reason = exc.rcvd.code, exc.rcvd.reason
            else:
                self.close_code = 1006
        return self

    def fps(self, skip: float = 0.5) -> float:
        """Frames per second after the first `skip` seconds."""
        if len(self.frames) < 2:
            return 0.0
        t0 = self.frames[0][3] + skip
        times = [f[3] for f in self.frames if f[3] >= t0]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])
