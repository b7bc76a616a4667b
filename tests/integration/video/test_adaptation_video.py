"""Tier adaptation on the default (mixed) ladder through the real stack: between video bitrates at
keyframes, down to the lightest JPEG tier on a link too slow for any video tier, and back.

Valkey, the inference service (default ladder) and the edge run as processes. The viewer offers
`h264,jpeg` and emulates a bottleneck on its side, as `tests/integration/edge/test_adaptation.py`
does for JPEG: each frame "arrives" (and is acked) when a virtual FIFO link of `rate` bytes/s has
carried it. The edge sees only the acks. Every H.264 frame is decoded with PyAV in arrival order:
a switch between video tiers must start at a keyframe, so there are no decoder errors.

The first (fast) phase ends on a condition, not at a fixed time: at the start the viewer decodes the
joining GOP on the same CPUs as the services and acks late, so the edge may step down and probe back
up (it judges the viewer, not the link). How long that takes depends on the machine's load (on a
loaded 2-core CI machine a step down at 2.1 s came back at 4.6 s, after a fixed 4 s settle window had
begun), so the fast phase lasts until the best tier has been delivered alone for STEADY_S, within
START_WITHIN_S. Later phases are judged from the moments the link rate actually changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from framecast import constants as C
from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import decode_frame
from tests.integration.client.stack import wait_ready
from tests.support.link import FifoLink
from tests.support.procs import edge_service, inference_service, running, service_port
from tests.support.timing import scaled, wait_until_async
from tests.support.viewer import open_viewer

pytest.importorskip("av", reason="PyAV is not installed (pip install 'framecast[video]')")

STEADY_S = 2.0  # the fast phase ends once only its expected tier arrived for this long (scaled)
START_WITHIN_S = 20.0  # ... which must happen within this long of the start (scaled)
EDGE_FLAGS = ("--tier-down-hold-s", "1", "--tier-up-hold-s", "1.5", "--tier-probe-interval-s", "1.5",
              "--latency-target-ms", "100", "--ack-timeout-s", "5")


@pytest.fixture(scope="module")
def stack_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedRedis(maxmemory="128mb") as redis:
        inference = inference_service(redis.url)
        edge = edge_service(redis.url, *EDGE_FLAGS)
        with running(inference, edge, log_dir=Path(tmp_path_factory.mktemp("adapt-video"))):
            url = f"http://127.0.0.1:{service_port(edge)}"
            wait_ready(url, edge, inference)
            yield url


Changes = list[tuple[float, str, str]]  # (seconds, tier, reason) of each `tier` message
Delivered = list[tuple[float, str, int]]  # (seconds, tier, codec) of each frame the link delivered


def only_tier_for(log: Delivered, tier: str, now: float, seconds: float) -> bool:
    """Whether the last `seconds` before `now` delivered frames of `tier` and of no other tier."""
    if not log or log[0][0] > now - seconds:
        return False
    recent = {name for t, name, _ in log if t >= now - seconds}
    return recent == {tier}


async def watch(url: str, phases: list[tuple[float, float]], *, first_steady: str
                ) -> tuple[Delivered, Changes, int, list[float]]:
    """Frames delivered (time, tier, codec) over the phases (rate bytes/s, seconds); tier changes; decoder
    errors; the phases' boundaries (seconds since the start). The first phase lasts its seconds and then
    until `first_steady` alone arrived for STEADY_S (at most START_WITHIN_S in all)."""
    from framecast.codecs.h264_decoder import H264Decoder

    link = FifoLink(phases[0][0])
    log: Delivered = []
    changes: Changes = []
    names: list[str] = []
    decoders: dict[int, H264Decoder] = {}
    # decoded in arrival order on one thread, off the loop: decoding on the loop (slow on a starved CPU) held
    # back this viewer's acks and link arrivals, so the edge saw a slower link than the emulated one
    decoding = ThreadPoolExecutor(max_workers=1)
    decodes: list[Future[int]] = []

    def decode(dec: H264Decoder, payload: bytes, keyframe: bool) -> int:
        before = dec.errors
        dec.decode(payload, keyframe)
        return dec.errors - before
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Future[None]] = set()
    t0 = time.monotonic()
    async with open_viewer(url.replace("http", "ws") + "/ws/demo") as ws:
        await ws.send(json.dumps({"type": "hello", "codecs": ["h264", "jpeg"], "tier": "auto"}))

        def delivered(frame_id: int, tier: int, codec: int) -> None:
            log.append((time.monotonic() - t0, names[tier] if tier < len(names) else str(tier), codec))
            pending.add(t := asyncio.ensure_future(ws.send(json.dumps({"type": "ack", "id": frame_id}))))
            t.add_done_callback(pending.discard)

        async def receive() -> None:
            async for msg in ws:
                if isinstance(msg, str):
                    obj = json.loads(msg)
                    if obj["type"] == "hello":
                        names[:] = [t["name"] for t in obj["tiers"]]
                    elif obj["type"] == "tier":
                        changes.append((round(time.monotonic() - t0, 1), obj["tier"], obj["reason"]))
                    continue
                f = decode_frame(msg)
                at = link.deliver_at(time.monotonic(), len(msg))
                if f.header.codec == C.CODEC_H264:  # in arrival order, as a browser would
                    dec = decoders.setdefault(f.header.tier, H264Decoder())
                    decodes.append(decoding.submit(decode, dec, bytes(f.payload), f.header.keyframe))
                loop.call_at(loop.time() + (at - time.monotonic()), delivered, f.header.frame_id, f.header.tier,
                             f.header.codec)

        rx = asyncio.create_task(receive())
        bounds = [0.0]
        for i, (rate, seconds) in enumerate(phases):
            link.rate = rate
            await asyncio.sleep(max(0.0, bounds[-1] + scaled(seconds) - (time.monotonic() - t0)))
            if i == 0:  # the start-up transient is over when the first phase's tier alone arrives
                left = START_WITHIN_S - (time.monotonic() - t0) / scaled(1.0)
                with contextlib.suppress(TimeoutError):  # not settled: the test's first assertion says so
                    await wait_until_async(f"only {first_steady} for {STEADY_S}s", lambda: only_tier_for(
                        log, first_steady, time.monotonic() - t0, scaled(STEADY_S)), max(0.0, left), interval=0.1)
            bounds.append(time.monotonic() - t0)
        rx.cancel()
    decoding.shutdown(wait=True)
    return log, changes, sum(d.result() for d in decodes), bounds


def tail(log: Delivered, a: float, b: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for t, tier, _ in log:
        if a <= t < b:
            out[tier] = out.get(tier, 0) + 1
    return out


async def test_moves_between_video_bitrates_and_to_jpeg_and_back(stack_url: str) -> None:
    # 8 MB/s, then 150 kB/s (1.2 Mbit/s: video-low fits, video-high does not), then 30 kB/s (240 kbit/s:
    # no video tier at 30 fps), then 8 MB/s again
    phases = [(8e6, 6.0), (150e3, 9.0), (30e3, 9.0), (8e6, 14.0)]
    log, changes, errors, marks = await watch(stack_url, phases, first_steady="video-high")
    print("tier changes:", changes, "phase bounds:", [round(m, 1) for m in marks])
    # each phase is judged on its tail: the fast one on its last STEADY_S (it ended once only video-high
    # arrived that long, or at START_WITHIN_S), the others after 5 s for the policy to settle
    fast, mid, slow, back = (tail(log, marks[i + 1] - scaled(STEADY_S) if i == 0 else marks[i] + scaled(5.0),
                                  marks[i + 1]) for i in range(4))
    print("delivered per phase tail:", fast, mid, slow, back)
    # a fast link: the best video tier, alone, within START_WITHIN_S of joining
    assert set(fast) == {"video-high"}, (f"not settled on video-high within {scaled(START_WITHIN_S):g}s", changes)
    # 1.2 Mbit/s: the lighter video tier (probes up may show video-high for a moment), never a heavy JPEG tier
    assert mid.get("video-low", 0) >= 0.7 * sum(mid.values()) and not {"high", "mid"} & set(mid), changes
    # 240 kbit/s: the lightest JPEG tier, which may drop frames (probes up to video-low fail back). What
    # arrives late in the phase may still be video sent before the rate fell (16 frames in flight take 5 s
    # to drain at 30 kB/s), so judge what the edge chose: JPEG low when the phase ends
    in_force = [tier for t, tier, _ in changes if t < marks[3]]
    assert in_force and in_force[-1] in ("low", "video-low"), changes
    assert "low" in {tier for t, tier, _ in changes if marks[2] <= t < marks[3]}, changes
    assert slow.get("low", 0) >= 1 and not {"high", "mid"} & set(slow), changes
    # the link recovers: back to the best video tier, through video-low, never a heavy JPEG tier
    assert back and max(back, key=lambda k: back[k]) == "video-high", changes
    assert not {"high", "mid"} & {tier for _, tier, _ in changes}, changes
    assert errors == 0, "a switch between video tiers did not start at a keyframe"
