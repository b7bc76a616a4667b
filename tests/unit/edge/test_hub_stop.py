"""The fan-out hub's housekeeping loop stops on a cancellation even when a Redis call swallowed it.

Python 3.11's `asyncio.wait_for` (redis-py wraps every command's write in one when a socket timeout is set, as
the edge's clients do) returns the result instead of raising when the cancellation lands as the awaited
operation completes. The task's `cancelling()` count still says it was asked to stop; the loop must honour it,
or `FanoutHub.close()` waits for it until its bound and the task runs on.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from framecast.bus import Keys
from framecast.edge.fanout import FanoutHub
from framecast.edge.metrics import EdgeMetrics


class SwallowingHub(FanoutHub):
    """A hub whose tick awaits a write through `asyncio.wait_for`, the way redis-py sends a command."""

    def __init__(self) -> None:
        client = aioredis.Redis(host="127.0.0.1", port=1)  # never used: the tick below replaces the Redis calls
        super().__init__(client, client, Keys(), EdgeMetrics(), edge_id="test")
        self.write: asyncio.Future[None] | None = None
        self.ticks = 0
        self.ticked = asyncio.Event()

    async def tick(self) -> None:
        self.ticks += 1
        self.write = asyncio.get_running_loop().create_future()
        self.ticked.set()
        await asyncio.wait_for(self.write, 5.0)


async def test_a_cancellation_swallowed_in_a_tick_still_stops_housekeeping() -> None:
    hub = SwallowingHub()
    hub.start()
    task = hub._housekeeping
    assert task is not None
    await asyncio.wait_for(hub.ticked.wait(), 5.0)
    assert hub.write is not None
    hub.write.set_result(None)  # the write completes ...
    task.cancel()  # ... as the stop lands: wait_for returns the result, the CancelledError is lost
    await asyncio.sleep(0.05)
    if sys.version_info < (3, 12):  # 3.12's wait_for raises the cancellation it was given; 3.11's loses it here
        assert not task.done() and task.cancelling() == 1, "the cancellation was not swallowed: nothing is tested"
    done, _ = await asyncio.wait([task], timeout=3.0)  # the loop's next turn is 1 s away
    assert done, f"housekeeping ran on after its cancellation ({hub.ticks} ticks)"
    assert task.cancelled()
    assert hub.ticks == 1
