"""Access control on a running edge: JWT checks before any frame, Origin allow-list, per-IP limits, /metrics port.

The edge runs with `--auth-secret`, an Origin allow-list, 3 viewers per
address and its metrics on a separate internal port; a real inference
service publishes the stream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator

import jwt
import psutil  # type: ignore[import-untyped]
import pytest

from framecast import constants as C
from framecast.dev.embedded import free_port
from framecast.edge.auth import make_token
from framecast.protocol import ClientHello
from tests.reliability.conftest import Stack, stack_running
from tests.reliability.support import (
    Viewer,
    http_status,
    http_text,
    record,
    stop_viewers,
)
from tests.support.metrics import metric
from tests.support.timing import wait_until_async

SECRET = "reliability-test-secret-0123456789abcdef"
GOOD_ORIGIN = "http://viewer.example"
PER_IP = 3
METRICS_PORT = free_port()


def token(**kw: object) -> str:
    return make_token(SECRET, kw.pop("streams", ["demo"]), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_running(tmp_path_factory.mktemp("access"),
                       edge_args=["--auth-secret", SECRET, "--allowed-origins", GOOD_ORIGIN,
                                  "--viewers-per-ip", str(PER_IP), "--metrics-port", str(METRICS_PORT),
                                  "--hello-timeout-s", "1"],
                       hello=ClientHello(token=token())) as s:
        yield s


def _metrics() -> str:
    return http_text(f"http://127.0.0.1:{METRICS_PORT}/metrics")


async def _one(viewer: Viewer, frames: int = 3) -> Viewer:
    viewer.start()
    await wait_until_async("frames or a close", lambda: len(viewer.frames) >= frames or viewer.closed, 20)
    return await viewer.stop()


def _alg_none_token() -> str:
    def b64(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'streams': '*', 'exp': int(time.time()) + 300})}."


BAD_TOKENS = {
    "missing": "",
    "expired": token(ttl_s=-60),
    "wrong-signature": make_token("another-secret-another-secret-0000", ["demo"]),
    "wrong-stream": token(streams=["other"]),
    "garbage": "not.a.jwt",
    "alg-none": _alg_none_token(),
    "no-streams-claim": jwt.encode({"exp": int(time.time()) + 300}, SECRET, algorithm="HS256"),
}


@pytest.mark.parametrize("how", ["hello", "authorization-header", "subprotocol"])
async def test_valid_token_gets_frames(stack: Stack, how: str) -> None:
    t = token()
    v = Viewer(stack.ws())
    if how == "hello":
        v.hello = ClientHello(token=t)
    elif how == "authorization-header":
        v.headers = {"Authorization": f"Bearer {t}"}
    else:
        v.subprotocols = ["framecast.v1", f"bearer.{t}"]
    await _one(v)
    assert len(v.frames) >= 3 and not v.close_code, (v.close_code, v.close_reason, v.error)


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_token_rejected_before_any_frame(stack: Stack, case: str) -> None:
    before = metric(_metrics(), "framecast_edge_rejected_viewers_total", reason="auth")
    v = await _one(Viewer(stack.ws(), hello=ClientHello(token=BAD_TOKENS[case])))
    assert v.close_code == C.CLOSE_AUTH_FAILED and v.close_reason, (v.close_code, v.close_reason, v.error)
    assert not v.frames, f"{len(v.frames)} frames sent before the rejection"
    assert metric(_metrics(), "framecast_edge_rejected_viewers_total", reason="auth") == before + 1


@pytest.mark.parametrize("case", ["silent", "token-in-url", "bad-header-token"])
async def test_other_unauthenticated_viewers_rejected(stack: Stack, case: str) -> None:
    v = Viewer(stack.ws(), hello=None)
    if case == "token-in-url":
        v.url += f"?token={token()}"
    elif case == "bad-header-token":
        v.headers = {"Authorization": f"Bearer {BAD_TOKENS['wrong-signature']}"}
        v.hello = ClientHello()
    t0 = time.monotonic()
    await _one(v)
    assert v.close_code == C.CLOSE_AUTH_FAILED and not v.frames, (v.close_code, v.close_reason, v.error)
    if case == "silent":
        assert (v.close_mono or 0) - t0 < 5, "a silent viewer is dropped after the hello timeout"


async def test_origin_allow_list(stack: Stack) -> None:
    hello = ClientHello(token=token())
    evil = await _one(Viewer(stack.ws(), hello=hello, origin="http://evil.example"))
    assert "403" in evil.error and not evil.frames, (evil.error, evil.close_code)
    good = await _one(Viewer(stack.ws(), hello=hello, origin=GOOD_ORIGIN))
    assert len(good.frames) >= 3, (good.close_code, good.error)
    cli = await _one(Viewer(stack.ws(), hello=hello))  # no Origin: not a browser
    assert len(cli.frames) >= 3, (cli.close_code, cli.error)


async def test_per_ip_limit(stack: Stack) -> None:
    await wait_until_async("no viewers left", lambda: metric(_metrics(), "framecast_edge_connected_viewers") == 0, 10)
    hello = ClientHello(token=token())
    first = [Viewer(stack.ws(), hello=hello).start() for _ in range(PER_IP)]
    await wait_until_async("the first viewers of 127.0.0.1 served", lambda: all(v.frames for v in first), 20)
    extra = await _one(Viewer(stack.ws(), hello=hello))
    other_ip = await _one(Viewer(stack.ws(), hello=hello, local_host="127.0.0.2"))
    await stop_viewers(first)
    assert extra.close_code == C.CLOSE_TRY_AGAIN_LATER and not extra.frames, (extra.close_code, extra.error)
    assert len(other_ip.frames) >= 3, "another address is not limited by the first one's count"
    assert all(not v.close_code for v in first)


def test_metrics_only_on_the_internal_port(stack: Stack) -> None:
    assert http_status(stack.base + "/metrics") == 404
    text = _metrics()
    assert "framecast_edge_connected_viewers" in text
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(stack.edge_pid).net_connections("tcp")
                 if c.status == "LISTEN"}
    assert ("127.0.0.1", METRICS_PORT) in listening, listening
    record("access_control", bad_tokens_rejected=len(BAD_TOKENS), frames_before_rejection=0,
           metrics_public_port_status=404, metrics_internal="127.0.0.1:<port>", per_ip_limit=PER_IP)


async def test_rejections_do_not_disturb_an_authorised_viewer(stack: Stack) -> None:
    watcher = Viewer(stack.ws(), hello=ClientHello(token=token())).start()
    await wait_until_async("frames to the authorised viewer", lambda: len(watcher.frames) >= 2, 20)
    # each from its own loopback address: the per-address limit is not what this test is about
    bad = [Viewer(stack.ws(), hello=ClientHello(token=t), local_host=f"127.0.1.{i * 5 + j + 1}")
           for i, t in enumerate(BAD_TOKENS.values()) for j in range(5)]
    await asyncio.gather(*(_one(v) for v in bad))
    n = len(watcher.frames)
    await wait_until_async("frames after the rejections", lambda: len(watcher.frames) >= n + 3, 10)
    await watcher.stop()
    assert all(v.close_code == C.CLOSE_AUTH_FAILED and not v.frames for v in bad), \
        {(v.close_code, v.error) for v in bad}
    assert not watcher.close_code and watcher.connects == 1
