"""Access control: HS256 tokens (hello, header, subprotocol), Origin allow-list, per-IP limit, metrics port."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.asyncio.client import connect

from framecast import constants as C
from framecast.dev.embedded import EmbeddedRedis, free_port
from framecast.edge.auth import make_token
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.viewer import ViewerClient

SECRET = "test-secret-0123456789abcdef-0123456789"
GOOD_ORIGIN = "http://viewer.example"


@pytest.fixture(scope="module")
def auth_edge(redis_server: EmbeddedRedis, publisher: Publisher, tmp_path_factory: Any) -> Iterator[EdgeProcess]:
    metrics_port = free_port()
    proc = EdgeProcess(redis_server.url, extra=["--hello-timeout-s", "2", "--allowed-origins", GOOD_ORIGIN,
                                                "--viewers-per-ip", "4", "--metrics-port", str(metrics_port)],
                       env={"FRAMECAST_AUTH_SECRET": SECRET})
    proc.metrics_port = metrics_port  # type: ignore[attr-defined]
    proc.start(str(tmp_path_factory.mktemp("auth")))
    yield proc
    proc.stop()


async def frames_or_close(v: ViewerClient, seconds: float = 2.0) -> ViewerClient:
    return await v.run(seconds, until_frames=5)


@pytest.mark.parametrize("how", ["hello", "header", "subprotocol"])
async def test_valid_token_gets_frames(auth_edge: EdgeProcess, how: str) -> None:
    token = make_token(SECRET, ["demo"], ttl_s=60)
    v = ViewerClient(auth_edge.ws())
    if how == "hello":
        v.hello = {"token": token}
    elif how == "header":
        v.headers = {"Authorization": f"Bearer {token}"}
    else:
        v.subprotocols = ["framecast.v1", f"bearer.{token}"]
    await frames_or_close(v)
    assert v.close_code is None and len(v.frames) == 5, (v.close_code, v.close_reason)
    assert v.server_hello is not None and v.controls[0]["type"] == "hello"


def expired() -> str:
    return make_token(SECRET, ["demo"], ttl_s=60, now=time.time() - 3600)


@pytest.mark.parametrize("token,why", [
    ("", "token required"),
    ("not-a-jwt", "invalid token"),
    ("EXPIRED", "expired"),
    ("WRONGSIG", "signature"),
    ("WRONGSTREAM", "not valid for stream"),
    ("NOSTREAMS", "streams"),
])
async def test_bad_tokens_are_rejected_before_any_frame(auth_edge: EdgeProcess, token: str, why: str) -> None:
    token = {"EXPIRED": expired(), "WRONGSIG": make_token("another-secret-of-enough-length-1234", ["demo"]),
             "WRONGSTREAM": make_token(SECRET, ["other"]),
             "NOSTREAMS": jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256")}.get(token, token)
    v = await frames_or_close(ViewerClient(auth_edge.ws(), hello={"token": token}))
    assert v.close_code == C.CLOSE_AUTH_FAILED, (v.close_code, v.close_reason)
    assert why in v.close_reason
    assert v.frames == [] and not any(c["type"] == "hello" for c in v.controls)


async def test_bad_header_token_rejected(auth_edge: EdgeProcess) -> None:
    v = await frames_or_close(ViewerClient(auth_edge.ws(), headers={"Authorization": f"Bearer {expired()}"}))
    assert v.close_code == C.CLOSE_AUTH_FAILED and v.frames == []


async def test_silent_viewer_times_out_with_4001(auth_edge: EdgeProcess) -> None:
    v = await ViewerClient(auth_edge.ws()).run(6.0)
    assert v.close_code == C.CLOSE_AUTH_FAILED and v.frames == []


async def test_token_in_url_is_not_accepted(auth_edge: EdgeProcess) -> None:
    token = make_token(SECRET, ["demo"])
    v = await frames_or_close(ViewerClient(auth_edge.ws() + f"?token={token}", hello={}))
    assert v.close_code == C.CLOSE_AUTH_FAILED


async def test_origin_allow_list_checked_before_accept(auth_edge: EdgeProcess) -> None:
    token = make_token(SECRET, ["demo"])
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(auth_edge.ws(), origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    v = ViewerClient(auth_edge.ws(), hello={"token": token}, headers={"Origin": GOOD_ORIGIN})
    await frames_or_close(v)
    assert len(v.frames) == 5


async def test_per_ip_limit(auth_edge: EdgeProcess) -> None:
    token = make_token(SECRET, ["demo"])
    keep = [ViewerClient(auth_edge.ws(), hello={"token": token, "tier": "low"}) for _ in range(4)]
    tasks = [asyncio.create_task(v.run(2.5)) for v in keep]
    await asyncio.sleep(1.0)
    extra = await ViewerClient(auth_edge.ws(), hello={"token": token}).run(2.0)
    await asyncio.gather(*tasks)
    assert extra.close_code == C.CLOSE_TRY_AGAIN_LATER and "address" in extra.close_reason
    assert all(v.close_code is None and v.frames for v in keep)


async def test_metrics_on_internal_port_only(auth_edge: EdgeProcess) -> None:
    port = auth_edge.metrics_port  # type: ignore[attr-defined]
    async with httpx.AsyncClient() as http:
        internal = await http.get(f"http://127.0.0.1:{port}/metrics")
        public = await http.get(auth_edge.base + "/metrics")
    assert internal.status_code == 200 and "framecast_edge_rejected_viewers_total" in internal.text
    assert public.status_code == 404
    assert json.loads((await asyncio.to_thread(httpx.get, auth_edge.base + "/healthz")).text)["status"] == "ok"


async def test_open_connection_closed_when_its_token_expires(auth_edge: EdgeProcess) -> None:
    # accepted within the 5 s clock-skew leeway, then expires about a second later
    token = make_token(SECRET, ["demo"], ttl_s=0, now=time.time() - 4)
    t0 = time.monotonic()
    v = await ViewerClient(auth_edge.ws(), hello={"token": token}).run(6.0)
    assert v.frames, "accepted at first"
    assert v.close_code == C.CLOSE_AUTH_FAILED and "expired" in v.close_reason
    assert time.monotonic() - t0 < 4.0
