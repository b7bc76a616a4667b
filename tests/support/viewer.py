"""The one `websockets` viewer of tests and benches.

`open_viewer` connects as a viewer does (no permessage-deflate: frames are JPEG/H.264), `messages` yields
what arrives (control messages parsed, frame messages as bytes) until a deadline or a stop condition, and
`ViewerClient` is the ready-made viewer: optionally says hello, records every frame (header decoded by
framecast.protocol) and control message, and acks (optionally after a delay)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from framecast.bus import raise_if_cancelling
from framecast.protocol import decode_frame
from tests.support.timing import scaled

MAX_MESSAGE_BYTES = 32 << 20


def open_viewer(url: str, *, open_timeout: float = 10.0, headers: dict[str, str] | None = None,
                subprotocols: list[str] | None = None, origin: str | None = None, local_host: str | None = None,
                **options: Any) -> connect:
    """`async with open_viewer(url) as ws:` a viewer's WebSocket (`open_timeout` is scaled); `local_host`: the
    address it connects from; `options`: more of websockets' `connect` arguments."""
    kwargs: dict[str, Any] = {"compression": None, "max_size": MAX_MESSAGE_BYTES, "open_timeout": scaled(open_timeout),
                              **options}
    if headers:
        kwargs["additional_headers"] = headers
    if subprotocols:
        kwargs["subprotocols"] = subprotocols
    if origin:
        kwargs["origin"] = origin
    if local_host:
        kwargs["local_addr"] = (local_host, 0)
    return connect(url, **kwargs)


async def messages(ws: ClientConnection, deadline: float = float("inf"), *, stop: Callable[[], bool] | None = None,
                   poll: float = 0.5) -> AsyncIterator[tuple[float, dict[str, Any] | bytes]]:
    """(arrival time on the monotonic clock, a control message parsed or a frame message's bytes) for each
    message, until `deadline` (monotonic) passes or `stop()` is true; waits at most `poll` s between checks."""
    while (now := time.monotonic()) < deadline and not (stop is not None and stop()):
        try:
            msg = await asyncio.wait_for(ws.recv(), max(0.01, min(poll, deadline - now)))
        except TimeoutError:
            continue
        # Python 3.11's wait_for returns the message and loses a cancellation that lands as it arrives: a
        # cancelled viewer (a test failing around it) would otherwise watch on until its deadline
        raise_if_cancelling()
        yield time.monotonic(), (json.loads(msg) if isinstance(msg, str) else msg)


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
        deadline = time.monotonic() + scaled(duration)
        try:
            async with open_viewer(self.url, headers=self.headers, subprotocols=self.subprotocols) as ws:
                if self.hello is not None:
                    await ws.send(json.dumps({"type": "hello", **self.hello}))
                async for t, msg in messages(ws, deadline, poll=float("inf")):
                    if isinstance(msg, dict):
                        if msg.get("type") == "hello" and self.server_hello is None:
                            self.server_hello = msg
                        self.controls.append(msg)
                        continue
                    if self.raw is not None:
                        self.raw.append(msg)
                    h = decode_frame(msg).header
                    self.frames.append((h.frame_id, h.capture_us, h.tier, t, len(msg)))
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
