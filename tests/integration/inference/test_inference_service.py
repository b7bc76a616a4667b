"""The inference service as a real process against a real Valkey: demand, Redis loss, restarts, bad starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from framecast.bus import now_us, sync_client
from framecast.dev.embedded import EmbeddedRedis
from tests.integration.inference.conftest import KEYS, frames, newest, scrape, start
from tests.support.procs import REPO
from tests.support.timing import scaled, wait_until

STARTUP = 30.0  # torch import + model check on a busy 2-core machine


def test_demand_drives_publishing_and_ids_continue_after_restart(redis_server: EmbeddedRedis,
                                                                   tmp_path: Path) -> None:
    client = sync_client(redis_server.url)
    (tmp_path / "first").mkdir()
    svc = start(redis_server.url, tmp_path / "first", "--idle-fps", "4")
    try:
        # idle: only the lowest tier, at the idle rate, so a joining viewer has a fresh first frame
        wait_until("idle frames of the lowest tier", lambda: len(frames(client, "low")) >= 2, STARTUP)
        meta = json.loads(client.get(KEYS.meta("demo")) or b"{}")
        assert [t["name"] for t in meta["tiers"]] == ["high", "mid", "low"]
        assert meta["tiers"][2] == {"name": "low", "width": 160, "height": 90, "quality": 50, "codec": "jpeg"}
        assert (meta["fps"], meta["model"], meta["device"], meta["source"]) == (30.0, "builtin", "cpu", "synthetic")
        assert now_us() - int(client.get(KEYS.heartbeat("demo")) or 0) < scaled(3e6)
        assert client.zscore(KEYS.streams_index(), "demo") is not None
        samples = scrape(svc)
        assert samples['framecast_inference_published_frames_total{tier="mid"}'] == 0.0  # exists at zero
        assert samples['framecast_inference_frames_dropped_total{reason="redis_error"}'] == 0.0
        assert samples['framecast_inference_info{device="cpu",dtype="float32",encoder="simplejpeg",model="builtin",'
                       'source="synthetic",stream="demo"}'] == 1.0
        assert frames(client, "high") == [] and frames(client, "mid") == []

        # an edge asks for `high`: every frame of it is published, only that tier on top of idle `low`
        def demand_and_count() -> bool:  # like an edge: the key is renewed while viewers watch
            client.set(KEYS.demand("demo", "high"), "edge-1", px=1000)
            return len(frames(client, "high")) >= 15

        wait_until("frames of the demanded tier", demand_and_count, scaled(15))
        got = frames(client, "high")
        ids = [f.header.frame_id for f in got]
        assert ids == sorted(set(ids))
        for f in got:
            h = f.header
            assert (h.tier, h.width, h.height, h.quality, h.keyframe) == (0, 320, 180, 80, True)
            assert h.capture_us <= h.publish_us <= now_us()
            image = cv2.imdecode(np.frombuffer(f.payload, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (180, 320, 3)
        assert frames(client, "mid") == []

        # the key expires (no edge renews it): publishing of `high` stops
        wait_until("demand key expiry", lambda: not client.exists(KEYS.demand("demo", "high")), scaled(5))
        expired = now_us()
        # frames already past the model when the demand ended may still land; then nothing more may appear
        last, since = newest(client, "high"), time.monotonic()

        def stopped_for_a_second() -> bool:
            nonlocal last, since
            current = newest(client, "high")
            if current != last:
                last, since = current, time.monotonic()
            return time.monotonic() - since >= 1.0

        wait_until("publishing of the tier to stop", stopped_for_a_second, scaled(10))
        # nothing captured after the expiry, give or take one demand poll
        assert last is not None and last.header.capture_us < expired + scaled(0.5e6)
        samples = scrape(svc)
        assert samples['framecast_inference_published_frames_total{tier="high"}'] >= 15
        assert samples['framecast_inference_frames_dropped_total{reason="no_demand"}'] > 0
    finally:
        started = time.monotonic()
        rc = svc.stop()
        assert rc == 0, svc.log()[-2000:]
        assert time.monotonic() - started < scaled(3.0)  # clean shutdown within ~2 s

    # a restarted service continues the frame ids above the newest one stored; beside it, a second
    # stream (its own process, as docs/inference.md says) shares the Valkey without touching demo's keys
    last_id = max(f.header.frame_id for f in frames(client, "high") + frames(client, "low"))
    (tmp_path / "second").mkdir()
    (tmp_path / "lobby").mkdir()
    again = start(redis_server.url, tmp_path / "second", "--demand", "all")
    lobby = start(redis_server.url, tmp_path / "lobby", "--demand", "all", "--tiers", "only=160x90@50",
                  stream="lobby")
    try:
        wait_until("frames of the second run and of the second stream",
                   lambda: len(frames(client, "mid")) >= 3 and len(frames(client, "only", "lobby")) >= 3, STARTUP)
    finally:
        assert again.stop() == 0, again.log()[-2000:]
        assert lobby.stop() == 0, lobby.log()[-2000:]
    ids = [f.header.frame_id for f in frames(client, "mid")]
    assert ids == sorted(set(ids)) and ids[0] > last_id
    assert f"first frame id {last_id + 1}," in again.log()
    assert frames(client, "only") == [] and frames(client, "high", "lobby") == []
    # ids are per stream: a new stream starts at 1 (its pipeline may drop a few frames under load)
    assert frames(client, "only", "lobby")[0].header.frame_id < 30
    members: Any = client.zrange(KEYS.streams_index(), 0, -1)
    assert {m.decode() for m in members} == {"demo", "lobby"}


def test_survives_redis_loss_and_resumes(tmp_path: Path) -> None:
    server = EmbeddedRedis(maxmemory="64mb").start()
    svc = start(server.url, tmp_path, "--demand", "all", "--encode-workers", "2")
    try:
        client = sync_client(server.url)
        wait_until("frames before the crash", lambda: len(frames(client, "high")) >= 5, STARTUP)
        before = newest(client, "high")
        assert before is not None
        server.kill()
        deadline = time.monotonic() + 1.5  # Redis away: the service must keep running
        while time.monotonic() < deadline:
            assert svc.alive(), svc.log()[-2000:]
            time.sleep(0.1)
        server.start()  # same port, empty
        client = sync_client(server.url)
        wait_until("frames after Redis came back", lambda: len(frames(client, "high")) >= 3, scaled(15))
        after = frames(client, "high")
        assert after[0].header.frame_id > before.header.frame_id
        ids = [f.header.frame_id for f in after]
        assert ids == sorted(set(ids))  # two encode workers, still in order
        wait_until("the meta announced again", lambda: client.get(KEYS.meta("demo")) is not None, scaled(5))
        samples = scrape(svc)
        assert samples['framecast_inference_bus_errors_total{op="publish"}'] > 0
        assert samples['framecast_inference_frames_dropped_total{reason="redis_error"}'] > 0
        assert svc.alive()
    finally:
        rc = svc.stop()
        server.stop()
    assert rc == 0, svc.log()[-2000:]


def test_file_source_without_loop_ends_the_service(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 90))  # type: ignore[attr-defined]
    for i in range(8):
        writer.write(np.full((90, 160, 3), 30 * i, np.uint8))
    writer.release()
    svc = start(redis_server.url, tmp_path, "--source", f"file:{path}", "--demand", "all", "--width", "160",
                "--height", "90", "--tiers", "only=160x90@80")
    assert svc.proc is not None
    assert svc.proc.wait(scaled(STARTUP)) == 0, svc.log()[-2000:]
    got = frames(sync_client(redis_server.url), "only")
    assert 1 <= len(got) <= 8  # at 10 fps nothing should drop, but a busy machine may
    assert all((f.header.width, f.header.height) == (160, 90) for f in got)
    assert got[-1].header.frame_id == 8  # the frames in flight at the end were published before the exit
    last = cv2.imdecode(np.frombuffer(got[-1].payload, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert last is not None


# one of each kind through a real process; every variant of each is covered in tests/unit/inference
BAD_STARTS = [
    (["--tiers", "high=1280x720@85,high=640x360@60"], "FRAMECAST_TIERS"),
    (["--source", "file:/nonexistent/clip.mp4"], "file not found: /nonexistent/clip.mp4"),
    (["--source", "camera:97"], "camera:97: no such camera"),
    (["--model", "no_such_pkg.models:make"], "cannot import no_such_pkg.models"),
]


def test_bad_starts_exit_2_with_one_clear_line() -> None:
    # all at once: each is a separate process, and interpreter start-up dominates
    procs = [subprocess.Popen([sys.executable, "-m", "framecast.inference", "--redis-url", "redis://127.0.0.1:9/0",
                               "--metrics-port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO) for args, _ in BAD_STARTS]
    for proc, (args, message) in zip(procs, BAD_STARTS, strict=True):
        _, err = proc.communicate(timeout=scaled(STARTUP))
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2, (args, err)
        assert lines and message in lines[-1], (args, err)
        assert lines[-1].startswith("framecast-inference: "), (args, err)


def test_metrics_port_in_use_exits_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "framecast.inference", "--metrics-port", str(port)],
                              capture_output=True, text=True, timeout=scaled(STARTUP), cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "FRAMECAST_METRICS_PORT (--metrics-port): cannot listen on" in proc.stderr.splitlines()[-1]


def test_sigterm_while_starting_exits_0(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    svc = start(redis_server.url, tmp_path)
    # the metrics line comes just before the model loads (the slow part of start-up)
    wait_until("the metrics server", lambda: "metrics on http://" in svc.log() or not svc.alive(), STARTUP)
    started = time.monotonic()
    assert svc.stop() == 0, svc.log()[-2000:]
    assert time.monotonic() - started < scaled(3.0)  # start-up is abandoned, not finished first


def test_video_tiers_without_pyav_exit_2_naming_the_tiers(tmp_path: Path) -> None:
    """The default ladder has H.264 tiers: an install without PyAV says so at start, not at the first frame."""
    shadow = tmp_path / "av"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('No module named av (shadowed by the test)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("FRAMECAST_TIERS", None)
    proc = subprocess.run([sys.executable, "-m", "framecast.inference", "--redis-url", "redis://127.0.0.1:9/0",
                           "--metrics-port", "0"], capture_output=True, text=True, timeout=scaled(STARTUP),
                          cwd=REPO, env=env)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr
    assert last.startswith("framecast-inference: invalid setting FRAMECAST_TIERS (--tiers): video tier(s) "
                           "video-high, video-low need PyAV"), last
