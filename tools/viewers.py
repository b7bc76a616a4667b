"""Real viewers for deployment tests: the project's client library (`framecast.client`), acking every frame.

A `ViewerPool` runs N subscriptions on its own asyncio loop in a background
thread so synchronous tests (which also poll Prometheus and kill processes)
can drive them. Each viewer reconnects as the client library does (jittered
back-off by close code) through the same URL, i.e. through the load balancer,
and the pool records which edge served it from each hello.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from framecast.client import ClientError, Subscription


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
    last_frame_id: int = -1
    last_error: str = ""
    frames_since_connect: int = 0


class ViewerPool:
    """N acking viewers of one URL, on a private event loop."""

    def __init__(self, url: str, count: int, *, tier: str = "auto", reconnect: bool = True,
                 connect_spacing_s: float = 0.02, codecs: tuple[str, ...] = ("jpeg",)) -> None:
        self.url, self.count, self.tier, self.reconnect = url, count, tier, reconnect
        self.codecs = codecs  # ("h264", "jpeg"): also video tiers (received and acked, not decoded)
        self.connect_spacing_s = connect_spacing_s
        self.states = [ViewerState(i) for i in range(count)]
        self._subs: dict[int, Subscription] = {}
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
        """Viewers receiving on their current connection."""
        return [s for s in self.states
                if s.index in self._subs and self._subs[s.index].connected and s.frames_since_connect > 0]

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
        sub = Subscription(self.url, tier=self.tier, client_id=f"deploy-test-{state.index}", ack="received",
                           reconnect=self.reconnect, open_timeout=5.0, codecs=self.codecs)
        self._subs[state.index] = sub
        try:
            # the stream may not be announced yet right after start-up (4004): try again until stopped
            while True:
                try:
                    await sub.open()
                    break
                except (ClientError, OSError, TimeoutError) as exc:
                    state.last_error = f"{type(exc).__name__}: {exc}"
                    state.failed_connects += 1
                    await asyncio.sleep(0.2)
            seen_reconnects = -1
            async for frame in sub:
                if sub.reconnects != seen_reconnects:  # a new connection (first, or after a reconnect)
                    seen_reconnects = sub.reconnects
                    state.connects = sub.reconnects + 1
                    state.frames_since_connect = 0
                    state.server = sub.hello.server if sub.hello else ""
                    state.servers.append(state.server)
                state.frames += 1
                state.frames_since_connect += 1
                state.bytes += frame.message_bytes
                state.last_frame_id = frame.frame_id
        except (ClientError, OSError, TimeoutError) as exc:
            state.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            await sub.close()
