"""Stream status: viewers hear 'stalled' when the source stops and 'live' when it returns, on one connection."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import decode_header
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.timing import scaled
from tests.support.viewer import open_viewer


async def test_stalled_then_live_again(edge: EdgeProcess, redis_server: EmbeddedRedis) -> None:
    pub = Publisher(redis_server.url, stream="stalltest", ladder=(("low", 320, 180, 50),)).start()
    events: list[tuple[float, str, Any]] = []
    try:
        async with open_viewer(edge.ws("stalltest")) as ws:
            t0 = time.monotonic()

            async def read_until(pred: Any, within: float) -> None:
                deadline = time.monotonic() + scaled(within)
                while True:
                    msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
                    if isinstance(msg, str):
                        obj = json.loads(msg)
                        events.append((time.monotonic() - t0, obj["type"], obj.get("state")))
                    else:
                        h = decode_header(msg)
                        events.append((time.monotonic() - t0, "frame", h.frame_id))
                        await ws.send(json.dumps({"type": "ack", "id": h.frame_id}))
                    if pred(events[-1]):
                        return

            await read_until(lambda e: e[1] == "frame", 3)
            pub.paused.set()
            paused_at = time.monotonic() - t0
            await read_until(lambda e: e[2] == "stalled", 6)
            stalled_at = events[-1][0]
            pub.paused.clear()
            await read_until(lambda e: e[2] == "live", 4)
            live_at = events[-1][0]
            await read_until(lambda e: e[1] == "frame" and e[0] > live_at - 1.0, 3)
        print(f"stalled {stalled_at - paused_at:.1f}s after the source stopped, live {live_at - stalled_at:.1f}s later")
        assert stalled_at - paused_at < scaled(4.5)
    finally:
        pub.stop()
