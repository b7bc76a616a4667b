"""Every refusal and protocol violation closes only that viewer, with its documented code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from framecast import constants as C
from framecast.dev.embedded import EmbeddedRedis
from tests.support.metrics import metric
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.viewer import ViewerClient, open_viewer


@pytest.fixture(scope="module")
def small_edge(redis_server: EmbeddedRedis, publisher: Publisher, tmp_path_factory: Any) -> Iterator[EdgeProcess]:
    proc = EdgeProcess(redis_server.url, extra=["--max-viewers", "3", "--max-message-bytes", "1024",
                                                "--control-rate", "50"]).start(str(tmp_path_factory.mktemp("e")))
    yield proc
    proc.stop()


async def close_code_after(url: str, send: str | bytes | None) -> tuple[int, str, int]:
    """Connect, optionally send one message, return (close code, reason, binary frames seen)."""
    frames = 0
    try:
        async with open_viewer(url) as ws:
            if send is not None:
                await ws.send(send)
            while True:
                msg = await asyncio.wait_for(ws.recv(), 10)
                frames += isinstance(msg, bytes)
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None, exc
        return exc.rcvd.code, exc.rcvd.reason, frames
    raise AssertionError("not closed")  # pragma: no cover


async def test_unknown_stream_4004(small_edge: EdgeProcess) -> None:
    code, reason, frames = await close_code_after(small_edge.ws("nosuchstream"), None)
    assert (code, frames) == (C.CLOSE_UNKNOWN_STREAM, 0) and "unknown stream" in reason


async def test_invalid_stream_name_4004(small_edge: EdgeProcess) -> None:
    code, _, _ = await close_code_after(small_edge.ws("bad.name!"), None)
    assert code == C.CLOSE_UNKNOWN_STREAM


async def test_non_json_text_4400(small_edge: EdgeProcess) -> None:
    code, reason, _ = await close_code_after(small_edge.ws(), "this is not json")
    assert code == C.CLOSE_BAD_MESSAGE and "JSON" in reason


async def test_unknown_message_type_4400(small_edge: EdgeProcess) -> None:
    code, _, _ = await close_code_after(small_edge.ws(), json.dumps({"type": "subscribe-all"}))
    assert code == C.CLOSE_BAD_MESSAGE


async def test_unknown_tier_4400(small_edge: EdgeProcess) -> None:
    code, reason, _ = await close_code_after(small_edge.ws(), json.dumps({"type": "set", "tier": "ultra"}))
    assert code == C.CLOSE_BAD_MESSAGE and "ultra" in reason


async def test_binary_from_viewer_1003(small_edge: EdgeProcess) -> None:
    code, _, _ = await close_code_after(small_edge.ws(), b"\x00\x01binary")
    assert code == C.CLOSE_UNSUPPORTED_DATA


async def test_oversized_message_1009(small_edge: EdgeProcess) -> None:
    code, _, _ = await close_code_after(small_edge.ws(), json.dumps({"type": "stats", "pad": "x" * 5000}))
    assert code == C.CLOSE_MESSAGE_TOO_BIG


async def test_control_flood_1008(small_edge: EdgeProcess) -> None:
    async def flood() -> int:
        try:
            async with open_viewer(small_edge.ws()) as ws:
                for _ in range(2000):
                    await ws.send('{"type":"stats","fps":1}')
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else 1006
    assert await flood() == C.CLOSE_POLICY_VIOLATION


async def test_too_many_viewers_1013_and_others_unaffected(small_edge: EdgeProcess) -> None:
    keep = [ViewerClient(small_edge.ws(), hello={"tier": "low"}) for _ in range(3)]
    tasks = [asyncio.create_task(v.run(3.0)) for v in keep]
    await asyncio.sleep(1.0)
    code, reason, frames = await close_code_after(small_edge.ws(), None)
    assert (code, frames) == (C.CLOSE_TRY_AGAIN_LATER, 0) and "too many" in reason
    await asyncio.gather(*tasks)
    assert all(v.close_code is None and len(v.frames) > 30 for v in keep)
    text = small_edge.metrics()
    assert metric(text, "framecast_edge_rejected_viewers_total", reason="too_many_viewers") >= 1
    assert metric(text, "framecast_edge_closes_total", code="4004") >= 1
