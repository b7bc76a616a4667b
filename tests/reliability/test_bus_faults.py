"""Faults of the bus and the source: Redis SIGKILLed and restarted, inference restarted, Redis memory bounded.

Real Valkey, real `python -m framecast.inference` (torch on the CPU), real
edge on uvicorn, real WebSocket viewers that stay on one connection throughout.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest
import redis

from framecast.bus import Keys
from tests.reliability.conftest import StackFactory
from tests.reliability.support import (
    STREAM_FPS,
    Viewer,
    http_status,
    record,
    run_viewers,
    stop_viewers,
    wait_stream,
)
from tests.support.timing import scaled, wait_until_async, wall_us

KEYS = Keys()
TIERS = ("high", "low")


class HttpPoller:
    """Polls /healthz and /readyz from a thread, recording (t, health, ready) so nothing is missed."""

    def __init__(self, base: str, interval: float = 0.1) -> None:
        self.base, self.interval = base, interval
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            self.samples.append((t, http_status(self.base + "/healthz", 3), http_status(self.base + "/readyz", 3)))
            self._stop.wait(self.interval)

    def __enter__(self) -> HttpPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def first(self, after: float, ready: int) -> float | None:
        return next((t for t, _, r in self.samples if t >= after and r == ready), None)


@pytest.mark.parametrize("outage_s", [1.0, 6.0], ids=["1s-outage", "6s-outage"])
async def test_redis_sigkill_and_restart_mid_stream(make_stack: StackFactory, outage_s: float) -> None:
    stack = make_stack()
    await wait_stream(stack.ws())
    viewers = [Viewer(stack.ws()) for _ in range(4)]
    await run_viewers(viewers)
    await wait_until_async("frames to every viewer", lambda: all(len(v.frames) >= 10 for v in viewers), 30)
    assert stack.inference is not None and stack.edge is not None

    with HttpPoller(stack.base) as poller:
        await wait_until_async("health samples", lambda: len(poller.samples) >= 3, 10)
        t_kill = time.monotonic()
        stack.redis.kill()
        await wait_until_async("/readyz 503 after the kill", lambda: poller.first(t_kill, 503) is not None, 10)
        t_unready = poller.first(t_kill, 503)
        await asyncio.sleep(outage_s)  # keep Redis down a while: the outage itself is the fault under test
        await asyncio.to_thread(stack.redis.start)
        t_back = time.monotonic()
        wall_back_us = wall_us()
        frames_at_back = [len(v.frames) for v in viewers]
        await wait_until_async("frames captured after Redis returned",
                               lambda: all(any(f.capture_us >= wall_back_us for f in v.frames_after(t_back))
                                     for v in viewers), 15)
        resume_s = max(min(f.recv_mono for f in v.frames_after(t_back) if f.capture_us >= wall_back_us) - t_back
                       for v in viewers)
        await wait_until_async("/readyz 200 again", lambda: poller.first(t_back, 200) is not None, 10)
        t_ready = poller.first(t_back, 200)
        # one more second of frames after the resume, to look for a backlog burst
        await asyncio.sleep(1.5)  # measurement window
        t_end = time.monotonic()

    assert stack.inference.alive() and stack.edge.alive(), stack.logs()
    health = [h for t, h, _ in poller.samples if t_kill <= t <= t_end]
    assert health and all(h == 200 for h in health), f"/healthz must stay 200: {sorted(set(health))}"
    for v in viewers:
        assert v.connects == 1 and not v.closed, (v.close_code, v.error)
        ids = [f.frame_id for f in v.frames]
        assert ids == sorted(set(ids)), "frame ids strictly increase across the outage"
        after = v.frames[frames_at_back[viewers.index(v)]:]
        # newest only: frames after the outage were captured after it (no stored backlog replayed) and
        # arrive at the stream's rate, not as a burst
        assert after, "frames after Redis returned"
        stale = [f for f in after if f.capture_us < wall_back_us - 1_000_000]
        assert not stale, f"{len(stale)} frames captured before the restart were delivered after it"
        first_second = [f for f in after if f.recv_mono < after[0].recv_mono + 1.0]
        assert len(first_second) <= STREAM_FPS * 1.5 + 3, f"burst of {len(first_second)} frames in 1 s"
        ages_ms = [(f.recv_wall_us - f.capture_us) / 1000 for f in after]
        assert max(ages_ms) < 1000, f"stale frame after resume: {max(ages_ms):.0f} ms old"
    assert resume_s <= scaled(5.0), f"viewers resumed {resume_s:.2f}s after Redis returned (limit 5 s)"
    assert t_unready is not None and t_ready is not None
    record(f"redis_sigkill_restart_{outage_s:.0f}s_outage", outage_s=outage_s,
           unready_after_kill_s=round(t_unready - t_kill, 2),
           resume_after_restart_s=round(resume_s, 2), ready_after_restart_s=round(t_ready - t_back, 2),
           viewers=len(viewers), reconnects=0,
           max_frames_first_second=max(len([f for f in v.frames[n:] if f.recv_mono < v.frames[n].recv_mono + 1])
                                       for v, n in zip(viewers, frames_at_back, strict=True)))
    await stop_viewers(viewers)


async def test_inference_restart_stalls_then_resumes_on_the_same_connection(make_stack: StackFactory) -> None:
    stack = make_stack(edge_args=["--stall-after-s", "1.5"])
    await wait_stream(stack.ws())
    viewers = [Viewer(stack.ws()) for _ in range(3)]
    await run_viewers(viewers)
    await wait_until_async("frames to every viewer", lambda: all(len(v.frames) >= 5 for v in viewers), 30)
    assert stack.inference is not None
    t_stop = time.monotonic()
    await asyncio.to_thread(stack.inference.stop)
    await wait_until_async("status stalled", lambda: all("stalled" in v.statuses() for v in viewers), 15)
    stalled_s = time.monotonic() - t_stop
    last_ids = [v.frames[-1].frame_id for v in viewers]
    t_restart = time.monotonic()
    await asyncio.to_thread(stack.restart_inference)
    await wait_until_async("frames from the restarted inference",
                           lambda: all(v.frames_after(t_restart) for v in viewers), 60)
    resume_s = max(v.frames_after(t_restart)[0].recv_mono for v in viewers) - t_restart
    await wait_until_async("status live again", lambda: all(v.statuses()[-1] == "live" for v in viewers), 10)
    for v, last in zip(viewers, last_ids, strict=True):
        assert v.connects == 1 and not v.closed, (v.close_code, v.error)
        assert v.frames_after(t_restart)[0].frame_id > last, "frame ids keep growing across the restart"
        states = v.statuses()
        assert states.index("stalled") < len(states) - 1 and states[-1] == "live", states
    record("inference_restart", stalled_status_after_stop_s=round(stalled_s, 2),
           frames_resume_after_restart_s=round(resume_s, 2), viewers=len(viewers), reconnects=0)
    await stop_viewers(viewers)


async def test_redis_memory_bounded_whatever_viewers_do(make_stack: StackFactory) -> None:
    maxlen = 30
    stack = make_stack(inference_args=["--demand", "all", "--maxlen", str(maxlen)], maxmemory="64mb")
    r = redis.Redis.from_url(stack.redis.url)
    try:
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert int(str(r.config_get("maxmemory")["maxmemory"])) == 64 * 2**20
        frames = [KEYS.frames("demo", t) for t in TIERS]

        def published() -> int:
            return sum(int(r.xinfo_stream(k)["entries-added"]) for k in frames if r.exists(k))

        # fill well past MAXLEN with no viewer at all
        await wait_until_async("streams filled past MAXLEN", lambda: published() >= 2 * len(TIERS) * (maxlen + 20), 60)

        samples: list[tuple[float, int, int, int]] = []  # t, used_memory, total stream bytes, max xlen

        def sample() -> None:
            used = int(r.info("memory")["used_memory"])
            stream_bytes = sum(int(r.memory_usage(k, samples=0) or 0) for k in frames)
            samples.append((time.monotonic(), used, stream_bytes, max(r.xlen(k) for k in frames)))

        # phase 1: no viewers; phase 2: a slow edge (SIGSTOPped: reads nothing) while inference keeps publishing
        for _ in range(6):
            sample()
            await asyncio.sleep(0.5)  # sampling interval
        assert stack.edge is not None
        stack.edge.signal(signal.SIGSTOP)
        try:
            for _ in range(6):
                sample()
                await asyncio.sleep(0.5)  # sampling interval
        finally:
            stack.edge.signal(signal.SIGCONT)
        added_during = published()
        assert added_during > 0
        max_len = max(s[3] for s in samples)
        # MAXLEN ~ trims whole radix-tree nodes; with entries of several KB each node holds one entry
        assert max_len <= maxlen + 100, f"streams grew to {max_len} entries (MAXLEN ~ {maxlen})"
        used = [s[1] for s in samples]
        assert max(used) - min(used) < 8 * 2**20, f"used_memory moved {min(used)} .. {max(used)}"
        per_stream = max(s[2] for s in samples)
        per_entry = per_stream / (len(TIERS) * max(1, min(s[3] for s in samples)))
        assert per_stream < 16 * 2**20
        # noeviction: a full Redis refuses writes rather than dropping keys; the bus keys are all there
        for k in (*frames, KEYS.meta("demo"), KEYS.heartbeat("demo")):
            assert r.exists(k), k
        record("redis_memory_bounded", maxlen=maxlen, max_xlen=max_len, bytes_per_stream=per_stream,
               bytes_per_entry=round(per_entry), used_memory_mib=round(max(used) / 2**20, 2),
               used_memory_spread_kib=round((max(used) - min(used)) / 1024), tiers=len(TIERS))
    finally:
        r.close()


async def test_redis_full_refuses_writes_then_recovers(make_stack: StackFactory) -> None:
    """maxmemory smaller than MAXLEN x frame size: noeviction refuses XADD; nothing crashes, viewers see
    'stalled' on their connection, and frames resume once memory is raised (no restart of anything)."""
    stack = make_stack(inference_args=["--maxlen", "5000"], maxmemory="3mb")
    await wait_stream(stack.ws())
    viewer = Viewer(stack.ws()).start()
    r = redis.Redis.from_url(stack.redis.url)
    try:
        await wait_until_async("Redis full: the stream stalls for viewers", lambda: "stalled" in viewer.statuses(), 60)
        info = r.info("memory")
        assert int(info["used_memory"]) <= int(info["maxmemory"]) * 1.1
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            r.xadd(KEYS.frames("demo", "high"), {"m": b"x" * 10_000})
        assert stack.inference is not None and stack.inference.alive() and stack.edge is not None
        assert stack.edge.alive()
        frames_when_full = len(viewer.frames)
        r.config_set("maxmemory", "64mb")
        t_raise = time.monotonic()
        await wait_until_async("frames after memory was raised",
                               lambda: len(viewer.frames) >= frames_when_full + 10, 30)
        await wait_until_async("status live again", lambda: viewer.statuses()[-1] == "live", 10)
        resume_s = viewer.frames[frames_when_full].recv_mono - t_raise
        assert viewer.connects == 1 and not viewer.closed
        record("redis_full_noeviction", maxmemory_mib=3, resume_after_raise_s=round(resume_s, 2),
               used_memory_mib_when_full=round(int(info["used_memory"]) / 2**20, 2), reconnects=0)
    finally:
        await stop_viewers([viewer])
        r.close()
