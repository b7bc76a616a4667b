"""HTTP surface (/healthz, /readyz, /streams, /snapshot, /) and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import cv2
import httpx
import numpy as np
import websockets

from framecast import constants as C
from framecast.bus import Keys, sync_client
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import decode_header
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.timing import scaled
from tests.support.viewer import ViewerClient, open_viewer


def test_healthz_readyz_streams(edge: EdgeProcess, publisher: Publisher) -> None:
    assert httpx.get(edge.base + "/healthz").json()["status"] == "ok"
    assert httpx.get(edge.base + "/readyz").status_code == 200
    body = httpx.get(edge.base + "/streams").json()
    demo = next(s for s in body["streams"] if s["stream"] == "demo")
    assert demo["live"] is True and [t["name"] for t in demo["tiers"]] == ["high", "medium", "low"]
    assert demo["fps"] == 30.0


def test_snapshot(edge: EdgeProcess, publisher: Publisher) -> None:
    for tier, (w, h) in (("high", (960, 540)), ("low", (320, 180))):
        r = httpx.get(edge.base + f"/snapshot/demo.jpg?tier={tier}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[:2] == (h, w)
        assert int(r.headers["x-frame-id"]) > 0
    assert httpx.get(edge.base + "/snapshot/nosuch.jpg").status_code == 404
    assert httpx.get(edge.base + "/snapshot/demo.jpg?tier=ultra").status_code == 404


def test_index_serves_the_viewer_page(edge: EdgeProcess) -> None:
    # the page is package data (pyproject), so an installed edge serves it: a 503 here is a packaging bug
    r = httpx.get(edge.base + "/")
    assert r.status_code == 200, r.text
    assert "html" in r.headers["content-type"]
    assert "<canvas" in r.text and "viewer.js" in r.text


def test_metrics_exposed_at_zero(edge: EdgeProcess) -> None:
    text = edge.metrics()
    for name in ("framecast_edge_frames_dropped_total", "framecast_edge_rejected_viewers_total",
                 "framecast_edge_closes_total", "framecast_edge_glass_to_glass_seconds_bucket",
                 "framecast_edge_bus_reader_lag_seconds_bucket", "framecast_edge_tier_switches_total"):
        assert name in text


async def test_demand_key_set_while_watched(edge: EdgeProcess, redis_server: EmbeddedRedis) -> None:
    v = ViewerClient(edge.ws(), hello={"tier": "low"})
    task = asyncio.create_task(v.run(2.5))
    client = sync_client(redis_server.url)
    deadline = time.monotonic() + scaled(5)
    while not client.exists(Keys().demand("demo", "low")):
        assert time.monotonic() < deadline, "no demand key for the watched tier"
        await asyncio.sleep(0.05)
    assert 0 < client.ttl(Keys().demand("demo", "low")) <= 5
    await task
    # the last viewer of the tier left: the edge releases its demand at once instead of letting it expire
    deadline = time.monotonic() + scaled(3)
    while client.exists(Keys().demand("demo", "low")):
        assert time.monotonic() < deadline, "demand key not released"
        await asyncio.sleep(0.05)
    client.close()


async def test_sigterm_drains_with_1012(redis_server: EmbeddedRedis, publisher: Publisher, tmp_path: Any) -> None:
    proc = EdgeProcess(redis_server.url, extra=["--drain-delay-s", "1", "--drain-timeout-s", "5"]).start(
        str(tmp_path))
    try:
        states: list[list[str]] = []
        codes: list[int | None] = []
        closed_at: list[float] = []  # when each viewer's close frame arrived
        framed = 0

        async def viewer() -> None:
            nonlocal framed
            seen: list[str] = []
            states.append(seen)
            try:
                async with open_viewer(proc.ws()) as ws:
                    while True:
                        msg = await asyncio.wait_for(ws.recv(), 15)
                        if isinstance(msg, str):
                            obj = json.loads(msg)
                            seen.append(obj.get("state", obj["type"]))
                        else:
                            if "frame" not in seen:
                                seen.append("frame")
                                framed += 1
                            await ws.send(json.dumps({"type": "ack", "id": decode_header(msg).frame_id}))
            except websockets.ConnectionClosed as exc:
                closed_at.append(time.monotonic())
                codes.append(exc.rcvd.code if exc.rcvd else None)

        tasks = [asyncio.create_task(viewer()) for _ in range(5)]
        deadline = time.monotonic() + scaled(15)
        while framed < 5:  # every viewer watching before the signal
            assert time.monotonic() < deadline, f"{framed} of 5 viewers got a frame"
            await asyncio.sleep(0.02)
        t0 = time.monotonic()
        assert proc.proc is not None
        proc.proc.send_signal(15)
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + scaled(1)
            while (await http.get(proc.base + "/readyz")).status_code != 503:
                assert time.monotonic() < deadline, "readyz still ready after SIGTERM"
                await asyncio.sleep(0.02)
            unready_after = time.monotonic() - t0  # at the 503 response
            assert (await http.get(proc.base + "/healthz")).status_code == 200
        await asyncio.gather(*tasks)
        closed_after = max(closed_at) - t0
        assert unready_after < min(closed_at) - t0, "readiness fails before the first viewer is closed"
        rc = await asyncio.to_thread(proc.proc.wait, scaled(10))
        exited_after = time.monotonic() - t0
        assert codes == [C.CLOSE_SERVICE_RESTART] * 5, codes
        assert all("draining" in s for s in states), states
        print(f"drain: all 5 viewers closed 1012 {closed_after:.2f}s after SIGTERM, exit {exited_after:.2f}s")
        assert 0.9 <= closed_after < 3, closed_after
        assert exited_after < 5.5 and rc == 0, (exited_after, rc, proc.log())
    finally:
        proc.stop()
