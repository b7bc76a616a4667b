"""The one `websockets` viewer of tests and benches: connects, optionally says hello, records every frame
(header decoded by framecast.protocol) and control message, and acks (optionally after a delay)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import connect

from framecast.protocol import decode_frame
from tests.support.timing import scaled


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
