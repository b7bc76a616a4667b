"""A blocking wrapper for scripts: `with connect_sync(url) as sub: for frame in sub: ...`.

The async `Subscription` runs on a private event loop in a daemon thread; each
call hands a coroutine to that loop and waits for its result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from framecast.client.reconnect import ReconnectPolicy
from framecast.client.stats import StatsWindow
from framecast.client.subscription import DEFAULT_URL, AckMode, ReceivedFrame, Subscription, connect
from framecast.protocol import AUTO, ServerHello

T = TypeVar("T")


class SyncSubscription:
    """Blocking twin of `Subscription`; iterate it for `ReceivedFrame`s."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="framecast-client", daemon=True)
        self._started = False

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> SyncSubscription:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        if not self._started:
            self._thread.start()
            self._started = True
        try:
            self._call(self.subscription.open())
        except BaseException:
            self._stop_loop()
            raise

    def close(self) -> None:
        if not self._started or self._loop.is_closed():
            return
        try:
            self._call(self.subscription.close(), timeout=10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        if self._started:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __iter__(self) -> Iterator[ReceivedFrame]:
        return self

    def __next__(self) -> ReceivedFrame:
        frame = self.next()
        if frame is None:
            raise StopIteration
        return frame

    def next(self, timeout: float | None = None) -> ReceivedFrame | None:
        """The next frame, None when the subscription ended; TimeoutError after `timeout` seconds."""
        return self._call(self.subscription.next(timeout))

    def set(self, *, tier: str | None = None, max_fps: float | None = None) -> None:
        self._call(self.subscription.set(tier=tier, max_fps=max_fps))

    @property
    def stats(self) -> StatsWindow:
        return self.subscription.stats

    @property
    def hello(self) -> ServerHello | None:
        return self.subscription.hello

    @property
    def tier(self) -> str | None:
        return self.subscription.tier

    @property
    def state(self) -> str:
        return self.subscription.state


def connect_sync(
    url: str = DEFAULT_URL,
    *,
    stream: str | None = None,
    tier: str = AUTO,
    client_id: str = "",
    max_fps: float = 0.0,
    token: str = "",
    codecs: Sequence[str] = ("jpeg",),
    decode_video: bool = False,
    ack: AckMode = "consumed",
    reconnect: bool = True,
    reconnect_timeout: float | None = None,
    open_timeout: float = 10.0,
    policy: ReconnectPolicy | None = None,
    stats_window_s: float = 5.0,
    stats_interval_s: float = 2.0,
    max_queue: int = 4,
    start_wait_s: float = 0.0,
) -> SyncSubscription:
    """Blocking `connect` (same arguments): `with framecast.connect_sync(url) as sub: for frame in sub: ...`."""
    return SyncSubscription(connect(url, stream=stream, tier=tier, client_id=client_id, max_fps=max_fps, token=token,
                                    codecs=codecs, decode_video=decode_video, ack=ack, reconnect=reconnect,
                                    reconnect_timeout=reconnect_timeout, open_timeout=open_timeout, policy=policy,
                                    stats_window_s=stats_window_s, stats_interval_s=stats_interval_s,
                                    max_queue=max_queue, start_wait_s=start_wait_s))
