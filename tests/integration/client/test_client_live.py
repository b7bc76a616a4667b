"""The client library and CLI against a real edge, real Valkey and a real inference service."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from framecast import constants as C
from framecast.client import ConnectError, Subscription, connect, connect_sync
from tests.integration.client.stack import EDGE_ARGS, GLASS_TO_GLASS_METRIC, Stack
from tests.support.metrics import metric, scrape
from tests.support.procs import REPO, edge_service, service_port, wait_http
from tests.support.timing import scaled, wait_until_async
from tests.unit.client.test_client_cli import one_error_line


async def test_frames_decode_and_acks_reach_the_edge(stack: Stack) -> None:
    acked_before = metric(scrape(stack.url), GLASS_TO_GLASS_METRIC + "_count")
    frames = []
    async with connect(stack.url, stream="demo", client_id="it-frames") as sub:
        assert sub.hello is not None and [t.name for t in sub.tiers]
        async with asyncio.timeout(scaled(30)):
            async for frame in sub:
                frames.append(frame)
                if len(frames) == 40:
                    break
        acks = sub.acks_sent
    ids = [f.frame_id for f in frames]
    assert all(b > a for a, b in itertools.pairwise(ids)), ids
    for frame in frames[::10]:
        image = frame.image()
        assert image.shape == (frame.height, frame.width, 3)
        assert frame.tier_name in [t.name for t in sub.tiers]
    live = [f.latency_ms for f in frames[5:]]
    assert min(live) >= 0 and sorted(live)[len(live) // 2] < 2000
    assert acks >= 39
    await wait_until_async("the edge counting the acks",
                           lambda: metric(scrape(stack.url), GLASS_TO_GLASS_METRIC + "_count") >= acked_before + 30, 10,
                           interval=0.1)


def test_sync_client(stack: Stack) -> None:
    with connect_sync(stack.url, client_id="it-sync") as sub:
        frame = sub.next(timeout=scaled(20))
        assert frame is not None and frame.width > 0
        assert sub.state == "live"


async def test_unknown_stream_is_refused(stack: Stack) -> None:
    with pytest.raises(ConnectError, match="unknown stream 'nope'") as info:
        async with connect(stack.url, stream="nope"):
            pass
    assert info.value.close_code == C.CLOSE_UNKNOWN_STREAM


async def test_pinned_tier(stack: Stack) -> None:
    async with connect(stack.url, client_id="it-tier") as sub:
        last = sub.tiers[-1]
        await sub.set(tier=last.name)
        async with asyncio.timeout(scaled(20)):
            async for frame in sub:
                if frame.tier_name == last.name:
                    break
        assert (frame.width, frame.height) == (last.width, last.height)


async def test_reconnects_after_the_edge_restarts(stack: Stack) -> None:
    edge = stack.start_edge(name="edge-restart")  # a second edge of its own, restarted on the same port
    port = int(edge.env["FRAMECAST_TEST_PORT"])
    url = f"http://127.0.0.1:{port}"
    sub = Subscription(url, client_id="it-restart")
    try:
        await sub.open()
        seen = []
        async with asyncio.timeout(scaled(20)):
            while len(seen) < 10:
                frame = await sub.next()
                assert frame is not None
                seen.append(frame.frame_id)
        await asyncio.to_thread(edge.stop)  # SIGTERM: the edge drains and closes viewers with 1012
        edge = await asyncio.to_thread(stack.start_edge, port, "edge-restarted")
        async with asyncio.timeout(scaled(60)):
            while sub.reconnects < 1 or len(seen) < 20:
                frame = await sub.next()
                assert frame is not None
                seen.append(frame.frame_id)
        assert sub.reconnects >= 1
        assert sub.close_code in (C.CLOSE_SERVICE_RESTART, C.CLOSE_GOING_AWAY, 1006)
        assert seen[-1] > seen[9]
    finally:
        await sub.close()
        await asyncio.to_thread(edge.stop)


async def test_stalled_status_when_the_source_stops(stack: Stack) -> None:
    source = await asyncio.to_thread(stack.start_small_source, "stall-py")
    try:
        async with connect(stack.url, stream="stall-py", client_id="it-stall") as sub:
            async with asyncio.timeout(scaled(20)):
                for _ in range(3):
                    assert await sub.next() is not None
            await asyncio.to_thread(source.stop)
            deadline = time.monotonic() + scaled(30)
            while sub.state != "stalled":
                assert time.monotonic() < deadline, f"never stalled (state {sub.state})"
                with contextlib.suppress(TimeoutError):
                    await sub.next(timeout=0.5)
            assert sub.status is not None and sub.status.state == "stalled"
            source = await asyncio.to_thread(stack.start_small_source, "stall-py")
            async with asyncio.timeout(scaled(60)):
                frame = await sub.next()
            assert frame is not None and sub.state == "live" and sub.reconnects == 0
    finally:
        await asyncio.to_thread(source.stop)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "framecast", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=scaled(timeout))


def test_cli_watch_json(stack: Stack) -> None:
    done = _cli("watch", stack.url, "--stream", "demo", "--client-id", "it-cli", "--duration", "4", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    print("watch summary:", done.stdout)
    assert summary["stream"] == "demo" and summary["client_id"] == "it-cli"
    assert summary["frames"] >= 20 and summary["fps"] > 5
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] < 5000
    assert summary["kbit_s"] > 100 and summary["tier"] in summary["tiers"]
    assert summary["width"] > 0 and summary["first_frame_ms"] < 5000
    assert summary["acks_sent"] >= summary["frames"] - 1


def test_cli_watch_prints_a_line_a_second(stack: Stack) -> None:
    done = _cli("watch", stack.url, "--duration", "2.5", "--client-id", "it-lines")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    ticks = [line for line in lines if line.startswith("t=")]
    assert len(ticks) >= 2 and "fps=" in ticks[-1] and "kbit/s" in ticks[-1] and "p95=" in ticks[-1]
    assert " frames in " in lines[-1] and "fps" in lines[-1]


def test_cli_probe_on_loopback(stack: Stack) -> None:
    done = _cli("probe", stack.url, "--seconds-per-tier", "1.5", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    print("probe result:", done.stdout)
    assert result["rtt_ms"]["min"] < 50
    assert result["throughput_method"] == "snapshot-burst"
    assert result["throughput_mbit_s"] > 50  # loopback carries far more than any tier needs
    assert result["recommended_tier"] in [t["name"] for t in result["tiers"]]
    assert result["recommended_fps"] > 5
    assert all(t["frames"] > 2 for t in result["tiers"])


def test_cli_streams(stack: Stack) -> None:
    done = _cli("streams", stack.url, "--json")
    assert done.returncode == 0, done.stderr
    streams = {s["stream"]: s for s in json.loads(done.stdout)}
    assert streams["demo"]["live"] and streams["demo"]["tiers"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("watch", "{url}", "--stream", "nope", "--duration", "2"), "unknown stream 'nope'"),
        (("watch", "gopher://127.0.0.1:1"), "unsupported URL scheme"),
        (("probe", "http://127.0.0.1:1"), "cannot reach"),
    ],
)
def test_cli_bad_input(stack: Stack, args: tuple[str, ...], message: str) -> None:
    done = _cli(*(a.format(url=stack.url) for a in args))
    assert done.returncode == 1
    assert message in one_error_line(done.stderr) and "Traceback" not in done.stderr, done.stderr


def test_cli_probe_with_auth_on_measures_the_tiers_a_browser_gets(stack: Stack) -> None:
    secret = "probe-secret-0123456789abcdef0123"
    edge = edge_service(stack.redis.url, *EDGE_ARGS, "--auth-secret", secret, name="edge-auth")
    edge.start(stack.log_dir)
    url = f"http://127.0.0.1:{service_port(edge)}"
    try:
        wait_http(url + "/healthz", 60, edge)
        refused = _cli("probe", url, "--seconds-per-tier", "0.5", "--burst-seconds", "0")
        assert refused.returncode == 1 and "authentication failed" in refused.stderr, refused.stderr
        minted = subprocess.run([sys.executable, "-m", "framecast", "token", "--stream", "demo", "--ttl", "120"],
                                capture_output=True, text=True, cwd=REPO, timeout=scaled(60),
                                env={**os.environ, "FRAMECAST_AUTH_SECRET": secret})
        assert minted.returncode == 0, minted.stderr
        done = _cli("probe", url, "--token", minted.stdout.strip(), "--seconds-per-tier", "1.5", "--json",
                    "--progress", "always")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        print("probe with a token:", done.stdout)
        codecs = {t["name"]: t["codec"] for t in result["tiers"]}
        # the default codecs are a browser's: the video tiers of the ladder are measured, first
        assert next(iter(codecs.values())) == "h264" and "jpeg" in codecs.values(), codecs
        assert result["recommended_tier"] in codecs and result["recommended_fps"] > 5
        assert result["throughput_method"] == "snapshot-burst", result["burst"]  # the token opens /snapshot too
        assert "probe: RTT" in done.stderr and "probe: throughput" in done.stderr, done.stderr
    finally:
        edge.stop()
