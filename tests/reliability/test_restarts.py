"""Start-up and restarts as a user sees them: `framecast watch` on a stream that is starting, and a viewer
joining right after Redis restarted empty (the source has not announced its stream again yet).

Real Valkey, real `python -m framecast.inference`, real edge, the real `framecast` CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from framecast import constants as C
from framecast.bus import Keys
from framecast.dev.embedded import EmbeddedRedis
from tests.reliability.conftest import StackFactory
from tests.reliability.support import STREAM_ARGS, Viewer, record, wait_stream
from tests.support.procs import REPO, edge_service, inference_service, running, service_port, wait_http
from tests.support.timing import scaled, wait_until_async

CLOSE_UNKNOWN_STREAM = 4004


def test_watch_waits_for_a_stream_that_is_starting(tmp_path: Path) -> None:
    """The edge is up, the inference service is not: `watch --wait` waits for the stream instead of failing."""
    with EmbeddedRedis(maxmemory="64mb") as server:
        edge = edge_service(server.url, "--log-level", "warning")
        with running(edge, log_dir=tmp_path):
            base = f"http://127.0.0.1:{service_port(edge)}"
            wait_http(base + "/healthz", 60, edge)
            cmd = [sys.executable, "-m", "framecast.cli", "watch", base, "--frames", "5", "--duration", "60",
                   "--json"]
            # without waiting: the stream is unknown, a fatal error at once (exit 1, one line)
            now = subprocess.run([*cmd, "--wait", "0"], capture_output=True, text=True, cwd=REPO,
                                 timeout=scaled(30))
            assert now.returncode == 1 and "unknown stream" in now.stderr, (now.returncode, now.stderr)
            watcher = subprocess.Popen([*cmd, "--wait", "90"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, cwd=REPO)
            try:
                time.sleep(1.0)  # the viewer is waiting before the source starts (the scenario, not readiness)
                assert watcher.poll() is None, watcher.communicate()
                t_source = time.monotonic()
                with running(inference_service(server.url, *STREAM_ARGS), log_dir=tmp_path):
                    out, err = watcher.communicate(timeout=scaled(120))
                    took = time.monotonic() - t_source
            finally:
                if watcher.poll() is None:
                    watcher.kill()
                    watcher.communicate()
    assert watcher.returncode == 0, (watcher.returncode, err[-2000:])
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["frames"] >= 5 and summary["reconnects"] == 0, summary
    record("watch_waits_for_starting_stream", frames=summary["frames"], seconds_from_source_start=round(took, 1))


async def test_recent_stream_is_stalled_not_unknown_after_redis_restarts_empty(make_stack: StackFactory) -> None:
    stack = make_stack()
    await wait_stream(stack.ws())  # a viewer watched the stream on this edge, then left
    assert stack.inference is not None and stack.edge is not None
    stack.inference.signal(signal.SIGSTOP)  # the source cannot announce the stream again until we say so
    try:
        stack.redis.kill()
        await asyncio.to_thread(stack.redis.start)
        client = redis.Redis.from_url(stack.redis.url)
        assert client.get(Keys().meta(C.DEFAULT_STREAM)) is None, "Redis came back with the stream's meta"
        client.close()
        await wait_until_async("/readyz 200 after the restart", lambda: _ready(stack.base), 15)

        # several joins, each alone: a command on a pooled connection that predates the restart fails, and
        # the edge then answers from its cache as in an outage; the later joins find Redis up and empty
        for i in range(4):
            viewer = Viewer(stack.ws()).start()
            await wait_until_async("a status or a close",
                                   lambda: "stalled" in viewer.statuses() or viewer.closed, 10)  # noqa: B023
            assert not viewer.closed, f"join {i} refused: {viewer.close_code} {viewer.close_reason} {viewer.error}"
            assert viewer.server(), "no hello"
            if i < 3:
                await viewer.stop()
                await asyncio.sleep(1.2)  # past the edge's 1 s stream-info cache: the next join asks Redis
    finally:
        stack.inference.signal(signal.SIGCONT)
    t_cont = time.monotonic()
    await wait_until_async("frames once the source is back", lambda: len(viewer.frames) >= 5 or viewer.closed, 30)
    took = time.monotonic() - t_cont
    assert not viewer.closed and viewer.connects == 1, (viewer.close_code, viewer.close_reason, viewer.error)
    await wait_until_async("status live again", lambda: viewer.statuses()[-1:] == ["live"], 10)
    await viewer.stop()
    record("recent_stream_after_empty_redis_restart", first_status="stalled", frames_after_source_back_s=round(took, 2))


def _ready(base: str) -> bool:
    from tests.reliability.support import http_status

    return http_status(base + "/readyz") == 200
