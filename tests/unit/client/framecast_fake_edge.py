"""A scriptable stand-in for the edge, for unit tests of client behaviour only.

It speaks the framecast protocol through `framecast.protocol` on a real
`websockets` server (real sockets on 127.0.0.1): hello, JPEG frames at a fixed
rate, status/tier messages, and the close codes a test asks for. It records the
viewer's hello, acks and set messages. Integration tests use the real edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from framecast import constants as C
from framecast.protocol import (
    ErrorMessage,
    FrameHeader,
    ServerHello,
    TierInfo,
    encode_control,
    encode_frame,
)
from tests.integration.video.h264_check import video_message
from tests.support.timing import wall_us

TIERS = (TierInfo("high", 64, 48, 80), TierInfo("low", 32, 24, 50))
VIDEO_SIZE = (96, 64)


def video_tiers() -> tuple[TierInfo, ...]:
    """A ladder with one real H.264 tier first (needs PyAV), then the JPEG tiers."""
    from framecast.codecs.h264_encoder import probe_codec_string

    codec = probe_codec_string(*VIDEO_SIZE, bitrate=None, crf=23, fps=30.0, encoder="libx264")
    return (TierInfo("video", *VIDEO_SIZE, 0, codec=codec), *TIERS)


def moving_picture(width: int, height: int, n: int) -> np.ndarray:  # type: ignore[type-arg]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, :, 1] = 40
    x = (n * 3) % width
    image[:, max(0, x - 6): x + 6] = (250, 250, 250)
    cv2.putText(image, str(n % 100), (4, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 80, 0), 2)
    return image
STATIC_DIR = Path(__file__).resolve().parents[3] / "src" / "framecast" / "edge" / "static"


def jpeg(width: int, height: int, quality: int, seed: int) -> bytes:
    image = np.full((height, width, 3), seed % 256, dtype=np.uint8)
    image[:, : max(1, (seed * 3) % width)] = (0, 200, 50)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


@dataclass
class Plan:
    """What the fake edge does on one connection."""

    close_after: int | None = None  # frames, then close with close_code
    close_code: int = C.CLOSE_SERVICE_RESTART
    close_reason: str = ""
    refuse: int | None = None  # close at once (after an error message) with this code
    send_hello: bool = True
    before_frames: list[str] = field(default_factory=list)  # raw text messages after the hello
    garbage_after: int | None = None  # send a malformed binary message after N frames
    drop_connection_after: int | None = None  # abort the TCP connection (no close frame)
    skip_ids: int = 0  # frame id step - 1 (to create gaps)
    video_start_delta: int = 0  # video tiers: send this many delta frames before the first keyframe


class FakeEdge:
    def __init__(self, *, fps: float = 100.0, streams: tuple[str, ...] = ("demo",),
                 plans: list[Plan] | None = None, tiers: tuple[TierInfo, ...] = TIERS) -> None:
        self.fps = fps
        self.streams = streams
        self.plans = plans or []
        self.tiers = tiers
        self.connections = 0
        self.hellos: list[dict[str, Any]] = []
        self.acks: list[int] = []
        self.sets: list[dict[str, Any]] = []
        self.stats: list[dict[str, Any]] = []
        self.keyframe_requests: list[dict[str, Any]] = []
        self.viewer_codecs: list[str] = ["jpeg"]
        self.tier_index = next((i for i, t in enumerate(tiers) if t.codec == "jpeg"), 0)
        self.next_id = 1
        self.server: Server | None = None
        self.port = 0
        self._jpegs = {i: jpeg(t.width, t.height, t.quality, i) for i, t in enumerate(tiers) if t.codec == "jpeg"}
        self.video_messages = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> FakeEdge:
        self.server = await serve(self._handler, "127.0.0.1", port, process_request=self._http, compression=None)
        self.port = self.server.sockets[0].getsockname()[1] if port == 0 else port
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close(close_connections=True)
            await self.server.wait_closed()
            self.server = None

    async def __aenter__(self) -> FakeEdge:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- HTTP side (for the probe and the page) -----------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return self._response(200, b"ok", "text/plain")
        if path == "/streams":
            body = json.dumps({"edge": "fake-edge", "streams": [
                {"stream": s, "tiers": [t.to_json() for t in self.tiers], "fps": self.fps, "live": True, "viewers": 0}
                for s in self.streams]}).encode()
            return self._response(200, body, "application/json")
        if path.startswith("/snapshot/"):
            return self._response(200, next(iter(self._jpegs.values())), "image/jpeg")
        if path in ("/", "/index.html") or path.startswith("/static/"):
            name = "index.html" if path in ("/", "/index.html") else path[len("/static/"):]
            file = (STATIC_DIR / name).resolve()
            if file.is_file() and STATIC_DIR in file.parents:
                kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}.get(file.suffix, "")
                return self._response(200, file.read_bytes(), kind)
        return self._response(404, b"not found", "text/plain")

    @staticmethod
    def _response(status: int, body: bytes, content_type: str) -> Response:
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return Response(status, "OK" if status == 200 else "Not Found", headers, body)

    # -- WebSocket side ----------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        plan = self.plans[index] if index < len(self.plans) else Plan()
        assert ws.request is not None
        stream = ws.request.path.rsplit("/", 1)[-1]
        hello_seen = asyncio.Event()
        reader = asyncio.create_task(self._read(ws, hello_seen))
        try:
            if stream not in self.streams or plan.refuse is not None:
                code = plan.refuse if plan.refuse is not None else C.CLOSE_UNKNOWN_STREAM
                await ws.send(encode_control(ErrorMessage(code, C.CLOSE_REASONS.get(code, "refused"))))
                await ws.close(code, C.CLOSE_REASONS.get(code, "refused"))
                return
            if plan.send_hello:
                await ws.send(encode_control(ServerHello(stream=stream, tiers=self.tiers,
                                                         tier=self.tiers[self.tier_index].name,
                                                         server="fake-edge", fps=self.fps)))
            for text in plan.before_frames:
                await ws.send(text)
            with contextlib.suppress(TimeoutError):  # the viewer's hello decides its tier (as on the real edge)
                await asyncio.wait_for(hello_seen.wait(), 1.0)
            sent = 0
            next_at = time.monotonic()
            video = None
            while True:
                if plan.close_after is not None and sent >= plan.close_after:
                    await ws.close(plan.close_code, plan.close_reason)
                    return
                if plan.drop_connection_after is not None and sent >= plan.drop_connection_after:
                    ws.transport.abort()
                    return
                if plan.garbage_after is not None and sent >= plan.garbage_after:
                    await ws.send(b"XX" + bytes(60))
                    await asyncio.sleep(1)
                    return
                tier = self.tier_index
                t = self.tiers[tier]
                if t.codec != "jpeg":
                    if video is None:  # one encoder per connection: every viewer starts at an IDR
                        from framecast.codecs.h264_encoder import VideoTierEncoder
                        from framecast.ladder import parse_video_tier

                        spec = parse_video_tier(f"{t.name}={t.width}x{t.height}@h264:crf23")
                        video = VideoTierEncoder(spec, tier_index=tier, input_format="bgr24", threads=1,
                                                 min_keyframe_gap_s=0.0)
                    out = video.encode(moving_picture(t.width, t.height, self.next_id))
                    if plan.video_start_delta and sent == 0:  # a viewer that joins mid-GOP: deltas, no IDR yet
                        for _ in range(plan.video_start_delta):
                            out = video.encode(moving_picture(t.width, t.height, self.next_id))
                            fake = video_message(video, out, frame_id=self.next_id, capture_us=wall_us())
                            self.next_id += 1
                            await ws.send(fake)
                        video.request_keyframe()
                        out = video.encode(moving_picture(t.width, t.height, self.next_id))
                    message = video_message(video, out, frame_id=self.next_id, capture_us=wall_us())
                    self.video_messages += 1
                else:
                    header = FrameHeader(frame_id=self.next_id, capture_us=wall_us(), width=t.width,
                                         height=t.height, tier=tier, quality=t.quality, flags=C.FLAG_KEYFRAME)
                    message = encode_frame(header, self._jpegs[tier])
                self.next_id += 1 + plan.skip_ids
                await ws.send(message)
                sent += 1
                next_at += 1.0 / self.fps  # an absolute schedule keeps the advertised rate exactly
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()

    async def _read(self, ws: ServerConnection, hello_seen: asyncio.Event) -> None:
        try:
            async for message in ws:
                obj = json.loads(message)
                kind = obj.get("type")
                if kind == "ack":
                    self.acks.append(obj["id"])
                elif kind == "hello":
                    self.hellos.append(obj)
                    self._pin(obj.get("tier", "auto"), obj.get("codecs", ["jpeg"]))
                    hello_seen.set()
                elif kind == "set":
                    self.sets.append(obj)
                    if "tier" in obj:
                        self._pin(obj["tier"])
                elif kind == "stats":
                    self.stats.append(obj)
                elif kind == "keyframe":
                    self.keyframe_requests.append(obj)
        except ConnectionClosed:
            pass

    def _pin(self, tier: str, codecs: list[str] | None = None) -> None:
        """A pinned tier, else the first tier this viewer can decode (the ladder lists video first)."""
        if codecs is not None:
            self.viewer_codecs = codecs
        names = [t.name for t in self.tiers]
        if tier in names:
            self.tier_index = names.index(tier)
            return
        decodable = [i for i, t in enumerate(self.tiers)
                     if (t.codec == "jpeg" and "jpeg" in self.viewer_codecs) or
                     (t.codec.startswith("avc1") and "h264" in self.viewer_codecs)]
        self.tier_index = decodable[0] if decodable else 0
