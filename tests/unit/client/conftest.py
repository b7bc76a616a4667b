from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.unit.client.framecast_fake_edge import FakeEdge


@pytest.fixture
async def fake_edge() -> AsyncIterator[FakeEdge]:
    async with FakeEdge() as edge:
        yield edge


@contextlib.contextmanager
def edge_in_thread(edge: FakeEdge) -> Iterator[FakeEdge]:
    """Run a fake edge on its own event loop thread, for code that calls `asyncio.run` itself (the CLI)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()  # start it from that thread: the caller's thread may run a loop already (Playwright's)
    asyncio.run_coroutine_threadsafe(edge.start(), loop).result(10)
    try:
        yield edge
    finally:
        asyncio.run_coroutine_threadsafe(edge.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def threaded_fake_edge() -> Iterator[FakeEdge]:
    with edge_in_thread(FakeEdge()) as edge:
        yield edge
