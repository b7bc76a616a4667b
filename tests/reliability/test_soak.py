"""Soak: 100 viewers on one edge for FRAMECAST_SOAK_SECONDS (60 in `make test`, 600 in `make soak`).

Steady frame rate, edge RSS and open file descriptors flat (growth and fitted slope
bounded), zero errors: no viewer closed or reconnected, no frame out of
order, no error in the edge's log.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import psutil  # type: ignore[import-untyped]
import pytest

from tests.reliability.conftest import StackFactory
from tests.reliability.support import (
    Viewer,
    record,
    run_viewers,
    slope_per_minute,
    stop_viewers,
    wait_stream,
)
from tests.support.metrics import metric
from tests.support.timing import scaled, wait_until_async

SOAK_SECONDS = float(os.environ.get("FRAMECAST_SOAK_SECONDS", "60"))
VIEWERS = int(os.environ.get("FRAMECAST_SOAK_VIEWERS", "100"))
SAMPLE_S = 2.0
WARMUP_S = 5.0


@pytest.mark.slow
@pytest.mark.timeout(scaled(SOAK_SECONDS + 180))
async def test_soak_100_viewers(make_stack: StackFactory) -> None:
    stack = make_stack(edge_args=["--viewers-per-ip", "0", "--max-viewers", str(VIEWERS + 10)])
    await wait_stream(stack.ws())
    viewers = [Viewer(stack.ws(), keep_frames=False) for _ in range(VIEWERS)]
    await run_viewers(viewers, spacing=0.02)
    await wait_until_async(f"a frame to each of {VIEWERS} viewers", lambda: all(v.n_frames for v in viewers), 60)
    await asyncio.sleep(WARMUP_S)  # warm-up before measuring: buffers and caches reach their working size

    text = stack.metrics()
    closes_before = metric(text, "framecast_edge_closes_total")
    edge_proc = psutil.Process(stack.edge_pid)
    cpu_start = sum(edge_proc.cpu_times()[:2])
    t_start = time.monotonic()
    first_ids = [v.last_frame_id for v in viewers]
    samples: list[tuple[float, int, int, int]] = []  # t, rss, fds, total frames
    window_fps: list[float] = []
    # delivered / published per window: separates the edge's delivery from a source slowed by a busy machine
    window_ratio: list[float] = []
    last_total, last_t = sum(v.n_frames for v in viewers), t_start
    last_ids = sum(v.last_frame_id for v in viewers)
    while time.monotonic() - t_start < SOAK_SECONDS:
        await asyncio.sleep(SAMPLE_S)  # sampling interval
        now = time.monotonic()
        st = stack.edge_stats()
        total = sum(v.n_frames for v in viewers)
        samples.append((now - t_start, st.rss_bytes, st.fds, total))
        ids = sum(v.last_frame_id for v in viewers)
        window_fps.append((total - last_total) / (now - last_t) / VIEWERS)
        window_ratio.append((total - last_total) / max(1, ids - last_ids))
        last_total, last_t, last_ids = total, now, ids
        assert not any(v.closed for v in viewers), [(v.close_code, v.error) for v in viewers if v.closed][:5]
    duration = time.monotonic() - t_start
    edge_cpu = (sum(edge_proc.cpu_times()[:2]) - cpu_start) / duration
    source_fps = statistics.median((v.last_frame_id - first) / duration for v, first in zip(viewers, first_ids,
                                                                                            strict=True))
    per_viewer_frames = [v.n_frames for v in viewers]
    text = stack.metrics()
    await stop_viewers(viewers)

    rss = [(t, r / 2**20) for t, r, _, _ in samples]
    fds = [f for _, _, f, _ in samples]
    rss_slope = slope_per_minute(rss)
    fd_slope = slope_per_minute([(t, float(f)) for t, _, f, _ in samples])
    third = max(1, len(rss) // 3)
    rss_growth = statistics.median(r for _, r in rss[-third:]) - statistics.median(r for _, r in rss[:third])
    mean_fps = statistics.mean(window_fps)
    # 2-s windows show hiccups of a shared machine (another process holding both cores for a moment);
    # 10-s windows show whether delivery as a whole held
    ratios = sorted(window_ratio)
    p10_ratio = ratios[len(ratios) // 10]
    per_block = max(1, round(10 / SAMPLE_S))
    block_ratio = [statistics.mean(window_ratio[i:i + per_block]) for i in range(0, len(window_ratio), per_block)]
    edge_log = stack.edge.log() if stack.edge else ""

    record(f"soak_{VIEWERS}_viewers_{SOAK_SECONDS:.0f}s", viewers=VIEWERS, seconds=round(duration),
           source_fps=round(source_fps, 1), mean_viewer_fps=round(mean_fps, 2),
           min_window_fps=round(min(window_fps), 2),
           min_2s_delivered_ratio=round(min(window_ratio), 2), p10_2s_delivered_ratio=round(p10_ratio, 2),
           min_10s_delivered_ratio=round(min(block_ratio), 2), deliveries_per_s=round(mean_fps * VIEWERS),
           edge_cpu_percent=round(100 * edge_cpu, 1),
           edge_rss_mib_start_end=f"{rss[0][1]:.1f}/{rss[-1][1]:.1f}", rss_slope_mib_per_min=round(rss_slope, 3),
           fds_min_max=f"{min(fds)}/{max(fds)}", fd_slope_per_min=round(fd_slope, 3),
           errors=sum(1 for v in viewers if v.closed or v.out_of_order),
           reconnects=sum(v.connects - 1 for v in viewers))

    # zero errors
    assert all(v.connects == 1 and not v.closed and v.out_of_order == 0 for v in viewers)
    assert metric(text, "framecast_edge_closes_total") == closes_before, "the edge closed no viewer"
    assert "Traceback" not in edge_log and " ERROR " not in edge_log, edge_log[-3000:]
    # steady rate: viewers near the source rate overall, and no window where the edge fell far behind it
    assert mean_fps >= 0.8 * source_fps, (mean_fps, source_fps)
    assert p10_ratio >= 0.8, (window_ratio, window_fps)
    assert min(block_ratio) >= 0.6, (block_ratio, window_fps)
    assert min(per_viewer_frames) >= 0.6 * max(per_viewer_frames), "no viewer starved"
    # flat memory and file descriptors
    assert rss_growth < 16, f"edge RSS grew {rss_growth:.1f} MiB over {duration:.0f}s (slope {rss_slope:.2f} MiB/min)"
    # the fitted slope: allocator noise moves a fit by a few MiB whatever the length, so the bound tightens with
    # the run (60 s: 4 MiB/min, measured 0.14-0.53; 600 s: 0.4 MiB/min, measured 0.08); a steady leak fails
    max_slope = max(0.25, 4.0 / (duration / 60))
    assert rss_slope < max_slope, f"edge RSS slope {rss_slope:.2f} MiB/min over {duration:.0f}s (bound {max_slope:.2f})"
    assert max(fds) - min(fds) <= 2, fds
