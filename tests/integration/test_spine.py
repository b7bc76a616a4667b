"""End to end on real parts: Valkey -> inference (torch, JPEG) -> edge (uvicorn) -> WebSocket viewers.

Also the launcher behind `make run`: it starts the stack and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import websockets

from framecast import constants as C
from framecast.dev.embedded import EmbeddedRedis, free_port
from framecast.protocol import Ack, decode_frame, encode_control, parse_server_message
from tests.support.procs import REPO, edge_service, inference_service, running, service_port, wait_http
from tests.support.timing import scaled, wait_until
from tests.support.viewer import open_viewer

N_FRAMES = 30


async def _watch(url: str, n: int) -> tuple[dict[str, object], list[tuple[int, bytes]]]:
    """Receive `n` frames as a well-behaved viewer (acks every frame)."""
    frames: list[tuple[int, bytes]] = []
    async with open_viewer(url, max_size=2**24) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))
        while len(frames) < n:
            msg = await asyncio.wait_for(ws.recv(), scaled(20))
            if isinstance(msg, str):
                parse_server_message(msg)  # status / tier messages must parse
                continue
            frame = decode_frame(msg)
            frames.append((frame.header.frame_id, msg))
            await ws.send(encode_control(Ack(frame.header.frame_id)))
    return hello, frames


@pytest.fixture
def stack(tmp_path: Path, redis_server: EmbeddedRedis):  # type: ignore[no-untyped-def]
    inference = inference_service(redis_server.url)
    edge = edge_service(redis_server.url)
    with running(inference, edge, log_dir=tmp_path):
        wait_http(f"http://127.0.0.1:{service_port(edge)}/healthz", 60, edge)
        yield inference, edge


async def test_frames_reach_two_viewers_end_to_end(stack) -> None:  # type: ignore[no-untyped-def]
    _, edge = stack
    url = f"ws://127.0.0.1:{service_port(edge)}/ws/{C.DEFAULT_STREAM}"
    # the stream exists once the inference service has announced it
    deadline = time.monotonic() + scaled(60)
    while True:
        try:
            (hello_a, frames_a), (_hello_b, frames_b) = await asyncio.gather(_watch(url, N_FRAMES),
                                                                            _watch(url, N_FRAMES))
            break
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == C.CLOSE_UNKNOWN_STREAM, exc
            assert time.monotonic() < deadline, "stream never appeared:\n" + stack[0].log()[-2000:]
            await asyncio.sleep(0.2)
    assert hello_a["type"] == "hello" and hello_a["stream"] == C.DEFAULT_STREAM and hello_a["tiers"]
    for frames in (frames_a, frames_b):
        ids = [i for i, _ in frames]
        assert ids == sorted(set(ids)), "frame ids strictly increase"
        for _, msg in frames:
            frame = decode_frame(msg)
            img = cv2.imdecode(np.frombuffer(frame.payload, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None, "payload is a decodable JPEG"
            assert img.shape[:2] == (frame.header.height, frame.header.width)
    # both viewers got the same frames: same ids carry the same bytes
    common = dict(frames_a).keys() & dict(frames_b).keys()
    assert len(common) >= N_FRAMES // 3, (len(common), [i for i, _ in frames_a][:5], [i for i, _ in frames_b][:5])
    for i in common:
        assert dict(frames_a)[i] == dict(frames_b)[i]


def test_unknown_stream_closes_with_documented_code(stack) -> None:  # type: ignore[no-untyped-def]
    _, edge = stack

    async def go() -> int:
        async with websockets.connect(f"ws://127.0.0.1:{service_port(edge)}/ws/no-such-stream") as ws:
            with pytest.raises(websockets.ConnectionClosed) as exc:
                while True:
                    await asyncio.wait_for(ws.recv(), scaled(10))
            assert exc.value.rcvd is not None
            return exc.value.rcvd.code

    assert asyncio.run(go()) == C.CLOSE_UNKNOWN_STREAM


def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_launcher_starts_everything_and_leaves_no_orphans(tmp_path: Path, sig: signal.Signals) -> None:
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in __import__("os").environ.items() if k != "FRAMECAST_REDIS_URL"}
    log = open(tmp_path / "launcher.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "framecast.dev.launcher", "--edge-port", str(port),
                             "--inference-metrics-port", str(metrics_port)], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 90)
        wait_http(f"http://127.0.0.1:{metrics_port}/metrics", 30)
        tree = _tree(proc.pid)
        names = " ".join(" ".join(p.cmdline()) for p in tree)
        assert "framecast.inference" in names and "framecast.edge" in names and "valkey-server" in names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert resp.status == 200
        # The launcher's promise: once the stream is live it prints where to look. The edge can answer before the
        # launcher's own poll has seen it, so wait for the line rather than signal into the middle of start-up.
        log_path = tmp_path / "launcher.log"
        wait_until("the launcher printing the viewer URL",
                   lambda: f"http://127.0.0.1:{port}/?stream=" in log_path.read_text(errors="replace"), 60,
                   interval=0.2,
                   alive=lambda: None if proc.poll() is None else f"launcher exited with {proc.returncode}")
        proc.send_signal(sig)
        assert proc.wait(scaled(20)) == 0
        _gone, alive = psutil.wait_procs(tree, timeout=scaled(5))
        assert not alive, f"orphans left: {[p.cmdline() for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = (tmp_path / "launcher.log").read_text(errors="replace")
    assert f"http://127.0.0.1:{port}/" in text and "metrics" in text


@pytest.mark.parametrize(("module", "argv", "name"), [
    ("framecast.edge", ["--port", "99999"], "FRAMECAST_PORT"),
    ("framecast.edge", ["--redis-url", "nope://x"], "FRAMECAST_REDIS_URL"),
    ("framecast.inference", ["--fps", "-1"], "FRAMECAST_FPS"),
    ("framecast.inference", ["--tiers", "high=12x@x"], "FRAMECAST_TIERS"),
    ("framecast.inference", ["--stream", "bad name!"], "FRAMECAST_STREAM"),
])
def test_bad_setting_exits_2(module: str, argv: list[str], name: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=REPO,
                            timeout=scaled(60))
    assert result.returncode == C.EXIT_BAD_SETTING, result.stderr
    assert name in result.stderr
    assert "Traceback" not in result.stderr
