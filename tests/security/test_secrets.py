"""Credentials never leak: a source URL's user info and query (API, metric labels, logs), and viewer tokens in
any form (URL query, Authorization header, bearer subprotocol, hello) in no log line at debug level."""

from __future__ import annotations

import asyncio
import functools
import http.client
import http.server
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from framecast.edge.auth import make_token
from framecast.protocol import ClientHello
from tests.reliability.conftest import Stack, stack_running
from tests.reliability.support import Viewer, http_text, stop_viewers
from tests.security.support import watch_attack
from tests.support.httpserve import QuietFiles, serving
from tests.support.timing import scaled, wait_until_async

SECRET = "security-secrets-secret-0123456789abcdef"
PASSWORD, API_KEY = "hunter2-source-password", "SECRETKEY-0123456789"


def token() -> str:
    return make_token(SECRET, ["demo"])


@pytest.fixture(scope="module")
def clip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real HTTP server with a 20 s MJPG clip: the source `http://user:pass@.../clip.avi?api_key=...`."""
    root = tmp_path_factory.mktemp("clip")
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 15.0,  # type: ignore[attr-defined]
                             (160, 90))
    for i in range(300):
        writer.write(np.full((90, 160, 3), i % 250, np.uint8))
    writer.release()
    with serving(functools.partial(QuietFiles, directory=str(root))) as server:
        yield f"http://viewer:{PASSWORD}@127.0.0.1:{server.server_port}/clip.avi?api_key={API_KEY}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, clip_server: str) -> Iterator[Stack]:
    with stack_running(tmp_path_factory.mktemp("security-secrets"),
                       edge_args=["--auth-secret", SECRET, "--log-level", "debug", "--access-log"],
                       inference_args=["--source", clip_server, "--log-level", "debug"],
                       hello=ClientHello(token=token())) as s:
        yield s


def _inference_metrics(stack: Stack) -> str:
    assert stack.inference is not None
    port = stack.inference.args[stack.inference.args.index("--metrics-port") + 1]
    return http_text(f"http://127.0.0.1:{port}/metrics")


def _get(port: int, path: str, headers: dict[str, str]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(10))
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().read()
    finally:
        conn.close()


async def test_source_credentials_reach_no_api_label_or_log(stack: Stack) -> None:
    streams = await asyncio.to_thread(_get, stack.port, "/streams", {"Authorization": f"Bearer {token()}"})
    labels = await asyncio.to_thread(_inference_metrics, stack)
    assert b"clip.avi" in streams and "clip.avi" in labels, (streams[:300], "the source is shown (redacted)")
    assert stack.inference is not None and stack.edge is not None
    for where, text in (("/streams", streams.decode()), ("inference metrics", labels),
                        ("inference log", stack.inference.log()), ("edge log", stack.edge.log())):
        assert PASSWORD not in text and API_KEY not in text and "viewer:" not in text, f"{where} leaks the source"


async def test_tokens_reach_no_log_line_at_debug_level(stack: Stack) -> None:
    tokens = {form: make_token(SECRET, ["demo"], subject=form) for form in
              ("query", "header", "subprotocol", "hello", "snapshot-query", "metrics-header")}

    async def attack() -> None:
        viewers = [
            Viewer(stack.ws() + f"?token={tokens['query']}", hello=ClientHello(token=tokens["query"])),
            Viewer(stack.ws(), headers={"Authorization": f"Bearer {tokens['header']}"}),
            Viewer(stack.ws(), subprotocols=["framecast.v1", f"bearer.{tokens['subprotocol']}"]),
            Viewer(stack.ws(), hello=ClientHello(token=tokens["hello"])),
        ]
        for v in viewers:
            v.start()
        await wait_until_async("frames to every token form", lambda: all(len(v.frames) >= 2 for v in viewers), 20)
        await stop_viewers(viewers)
        await asyncio.to_thread(_get, stack.port, f"/snapshot/demo.jpg?token={tokens['snapshot-query']}", {})
        await asyncio.to_thread(_get, stack.port, "/metrics", {"Authorization": f"Bearer {tokens['metrics-header']}"})

    # the HTTP clip is not paced (a live source runs at its own rate): its frame rate says nothing here
    await watch_attack(stack, "tokens_in_logs", attack, viewer_kwargs={"hello": ClientHello(token=token())},
                       min_fps_ratio=0.0)
    assert stack.edge is not None
    log = stack.edge.log()
    assert "WebSocket" in log or "GET /" in log, "the debug/access log ran"
    for form, tok in tokens.items():
        signature = tok.rsplit(".", 1)[1]
        payload = tok.split(".")[1]
        assert signature not in log and payload not in log, f"the {form} token is in the edge log"
