"""Real WebSocket viewers for deployment tests: hello, then an ack for every frame.

A `ViewerPool` runs N viewers on its own asyncio loop in a background thread
so synchronous tests (which also poll Prometheus and kill processes) can
drive them. A viewer whose connection closes reconnects through the same URL
(the load balancer), after a short jittered pause, and counts it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from framecast.protocol import (
    Ack,
    ClientHello,
    ProtocolError,
    ServerHello,
    decode_header,
    encode_control,
    parse_server_message,
)


@dataclass
class ViewerState:
    """What one viewer saw; read from other threads (ints and strings only)."""

    index: int
    frames: int = 0
    bytes: int = 0
    connects: int = 0
    failed_connects: int = 0
    server: str = ""  # the edge's name from its hello, for the connection in progress
    servers: list[str] = field(default_factory=list)  # every edge this viewer was served by, in order
    connected: bool = False
    last_frame_id: int = -1
    last_error: str = ""
    frames_since_connect: int = 0


class ViewerPool:
    """N acking viewers of one URL, on a private event loop."""

    def __init__(self, url: str, count: int, *, tier: str = "auto", reconnect: bool = True,
                 connect_spacing_s: float = 0.02) -> None:
        self.url, self.count, self.tier, self.reconnect = url, count, tier, reconnect
        self.connect_spacing_s = connect_spacing_s
        self.states = [ViewerState(i) for i in range(count)]
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="viewers", daemon=True)

    def start(self) -> ViewerPool:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> ViewerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- views for the test thread -------------------------------------------------------------
    def total_frames(self) -> int:
        return sum(s.frames for s in self.states)

    def connected(self) -> list[ViewerState]:
        return [s for s in self.states if s.connected and s.frames_since_connect > 0]

    # --- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tasks = []
        for state in self.states:
            tasks.append(asyncio.create_task(self._viewer(state)))
            await asyncio.sleep(self.connect_spacing_s)  # spread the handshakes a little
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _viewer(self, state: ViewerState) -> None:
        rng = random.Random(state.index)
        while True:
            try:
                async with connect(self.url, compression=None, open_timeout=5, max_size=8 * 1024 * 1024,
                                   ping_interval=None) as ws:
                    state.connects += 1
                    state.frames_since_connect = 0
                    await ws.send(encode_control(ClientHello(client_id=f"deploy-test-{state.index}",
                                                             tier=self.tier)))
                    state.connected = True
                    async for message in ws:
                        if isinstance(message, bytes):
                            header = decode_header(message)
                            state.frames += 1
                            state.frames_since_connect += 1
                            state.bytes += len(message)
                            state.last_frame_id = header.frame_id
                            await ws.send(encode_control(Ack(header.frame_id)))
                        else:
                            parsed = parse_server_message(message)
                            if isinstance(parsed, ServerHello):
                                state.server = parsed.server
                                state.servers.append(parsed.server)
            except asyncio.CancelledError:
                state.connected = False
                raise
            except (ConnectionClosed, InvalidHandshake, InvalidStatus, OSError, TimeoutError, ProtocolError) as exc:
                state.last_error = f"{type(exc).__name__}: {exc}"
                if state.connected is False:
                    state.failed_connects += 1
            state.connected = False
            if not self.reconnect:
                return
            await asyncio.sleep(rng.uniform(0.1, 0.3))


def wait_for(check: object, timeout: float, interval: float = 0.1) -> bool:
    """Poll a zero-argument callable until it returns true or `timeout` passes."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
