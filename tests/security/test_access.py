"""Access control under attack: every route that serves stream data wants the token, token-less sockets cannot
lock viewers out, snapshots cannot be pulled in bulk. The edge runs with auth on, metrics on its main port."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from framecast import constants as C
from framecast.edge.auth import make_token
from framecast.protocol import ClientHello
from tests.reliability.conftest import Stack, stack_running
from tests.reliability.support import Viewer
from tests.security.support import attacker_address, watch_attack
from tests.support.rawws import read_close_code, ws_handshake
from tests.support.timing import scaled, wait_until_async

SECRET = "security-suite-secret-0123456789abcdef"
MAX_VIEWERS = 5  # three honest viewers, room for two more


def token(streams: list[str] | str = "demo") -> str:
    return make_token(SECRET, [streams] if streams == "demo" else streams)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_running(tmp_path_factory.mktemp("security-auth"),
                       edge_args=["--auth-secret", SECRET, "--max-viewers", str(MAX_VIEWERS), "--log-level", "info"],
                       hello=ClientHello(token=token())) as s:
        yield s


def honest() -> dict[str, dict[str, str]]:
    """The honest viewers' options, with a token minted now (a module-level one expires in a long suite)."""
    return {"headers": bearer(token())}


def _get(port: int, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(10), source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def test_routes_serving_stream_data_want_the_token(stack: Stack) -> None:
    def probe() -> dict[str, int]:
        p = stack.port
        return {
            "streams": _get(p, "/streams", source=attacker_address())[0],
            "streams+token": _get(p, "/streams", bearer(token()))[0],
            "metrics": _get(p, "/metrics", source=attacker_address())[0],
            "metrics+demo-token": _get(p, "/metrics", bearer(token()))[0],
            "metrics+all-streams-token": _get(p, "/metrics", bearer(make_token(SECRET, "*")))[0],
            "snapshot": _get(p, "/snapshot/demo.jpg", source=attacker_address())[0],
            "snapshot+token": _get(p, "/snapshot/demo.jpg", bearer(token()))[0],
            "healthz": _get(p, "/healthz", source=attacker_address())[0],
        }

    statuses, _ = await watch_attack(stack, "routes_without_token", lambda: asyncio.to_thread(probe),
                                     viewer_kwargs=honest())
    assert statuses == {"streams": 401, "streams+token": 200, "metrics": 401, "metrics+demo-token": 401,
                        "metrics+all-streams-token": 200, "snapshot": 401, "snapshot+token": 200,
                        "healthz": 200}, statuses
    _, listed = _get(stack.port, "/streams", bearer(make_token(SECRET, ["other"])))
    assert b'"demo"' not in listed, "a token lists only the streams it names"


def _tokenless(port: int, source: str) -> tuple[int | None, float]:
    """A WebSocket that never sends its hello: (its close code, seconds it was held)."""
    t0 = time.monotonic()
    try:
        sock = ws_handshake(port, source=source)
    except (OSError, AssertionError):
        return None, 0.0
    try:
        return read_close_code(sock, within=10), time.monotonic() - t0
    finally:
        sock.close()


async def test_tokenless_sockets_do_not_lock_viewers_out(stack: Stack) -> None:
    joins: list[Viewer] = []

    async def attack() -> list[tuple[int | None, float]]:
        squatters = asyncio.gather(*(asyncio.to_thread(_tokenless, stack.port, attacker_address(i % 10))
                                     for i in range(30)))
        await asyncio.sleep(0.3)  # the squatters are connected (load shaping, not a readiness wait)
        for _ in range(5):  # a valid viewer joins five times while 30 token-less sockets wait
            v = Viewer(stack.ws(), headers=bearer(token())).start()
            joins.append(v)
            await wait_until_async("a valid viewer's frames", lambda: len(v.frames) >= 2 or v.closed, 15)  # noqa: B023
            await v.stop()
        return list(await squatters)

    results, figures = await watch_attack(stack, "tokenless_lockout", attack, viewer_kwargs=honest())
    codes = Counter(code for code, _ in results)
    figures.extra.update(valid_joins=sum(1 for v in joins if len(v.frames) >= 2), squatters=dict(codes))
    figures.record()
    assert all(len(v.frames) >= 2 for v in joins), [(v.close_code, v.close_reason) for v in joins]
    assert set(codes) <= {C.CLOSE_AUTH_FAILED, C.CLOSE_TRY_AGAIN_LATER}, codes
    assert max(held for _, held in results) < scaled(2.0 + 3.0), "a token-less socket was held past the deadline"


def _snapshot_puller(port: int, source: str, seconds: float, out: Counter[str], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(10), source_address=(source, 0))
    deadline = time.monotonic() + seconds
    headers = bearer(token())
    try:
        while time.monotonic() < deadline:
            conn.request("GET", "/snapshot/demo.jpg", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            with lock:
                out[str(resp.status)] += 1
                out["bytes"] += len(body)
            if resp.status == 429:
                time.sleep(0.05)  # a polite client would wait Retry-After; this one barely does
    except (OSError, http.client.HTTPException):
        with lock:
            out["errors"] += 1
    finally:
        conn.close()


async def test_snapshot_flood_is_bounded(stack: Stack) -> None:
    out: Counter[str] = Counter()
    lock = threading.Lock()
    seconds = 5.0

    async def attack() -> None:
        await asyncio.gather(*(asyncio.to_thread(_snapshot_puller, stack.port, attacker_address(i), seconds, out,
                                                 lock) for i in range(8)))

    _, figures = await watch_attack(stack, "snapshot_flood", attack, viewer_kwargs=honest())
    figures.extra.update(dict(out), mib_per_s=round(out["bytes"] / 2**20 / seconds, 1))
    figures.record()
    assert out["200"] > 0
