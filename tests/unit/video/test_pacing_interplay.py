"""The GOP queue behind the edge's ack window, on a fake clock: a video viewer keeps up at 30 fps.

A discrete-event link (bandwidth serialisation + round trip) acks each frame; the edge's own
`ViewerState` (on a video tier) decides when `GopViewerQueue.pop` may send. Video cannot skip frames, so the
window's frame cap must cover a round trip of frames: with `max_frames=16` a 150 ms path keeps
30 fps without ever falling behind (docs/video.md has the table, including the 4-frame cap).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import pytest

from framecast.edge.gop import GopViewerQueue
from framecast.edge.viewer import OPEN, ViewerConfig, ViewerState
from tests.support.link import FifoLink

FRAME_US = 33_333


@dataclass(frozen=True)
class Sim:
    fps: float
    behind: int
    keyframe_requests: int
    p95_ms: float


def simulate(rtt_ms: int, max_frames: int, *, mbit: float = 8.0, seconds: int = 20, p_bytes: int = 10_000,
             key_bytes: int = 40_000, gop_s: float = 2.0) -> Sim:
    state = ViewerState(ViewerConfig(latency_target_us=100_000, max_inflight_frames=max_frames, adapt=False), 0,
                        n_tiers=1, rungs=(0,))
    state.on_ack(0, 0)  # the viewer acks: its frames are tracked in the window from the first one
    queue = GopViewerQueue[tuple[int, int, int]]()
    acks: list[tuple[int, int, int]] = []
    link = FifoLink.per_us(mbit * 1e6 / 8, rtt_ms * 1000)  # the ack's return counted in the one-way delay
    frame_id, next_frame_us, last_key_us, key_pending = 0, 0, -(10**9), False
    sent, requests, delays = 0, 0, []
    for now in range(0, seconds * 1_000_000, 1000):
        if now >= next_frame_us:  # the encoder: IDR every gop_s, or 250 ms after a request
            key = frame_id == 0 or now - last_key_us >= gop_s * 1e6 or (key_pending and now - last_key_us >= 250_000)
            if key:
                last_key_us, key_pending = now, False
            size = key_bytes if key else p_bytes
            if queue.offer((frame_id, now, size), frame_id, key, size, now).request_keyframe:
                requests += 1
                key_pending = True
            frame_id += 1
            next_frame_us += FRAME_US
        while acks and acks[0][0] <= now:
            t, fid, capture = heapq.heappop(acks)
            state.on_ack(t, fid)
            delays.append((t - capture) / 1000)
        while state.gate(now, video=True) == OPEN:
            item = queue.pop()
            if item is None:
                break
            fid, capture, size = item
            state.on_sent(now, fid, size, capture)
            sent += 1
            heapq.heappush(acks, (int(link.deliver_at(now, size)), fid, capture))
    delays.sort()
    return Sim(sent / seconds, queue.counters.dropped["behind"], requests, delays[int(len(delays) * 0.95)])


@pytest.mark.parametrize("rtt_ms", [20, 50, 100, 150])
def test_video_viewer_keeps_30_fps_with_a_16_frame_window(rtt_ms: int) -> None:
    sim = simulate(rtt_ms, max_frames=16)
    assert sim.fps > 29.5 and sim.behind == 0 and sim.keyframe_requests == 0
    # the floor plus what the window may queue: latency target (100 ms), one keyframe's serialization
    # (40 KB at 8 Mbit/s = 40 ms) and one frame interval
    assert sim.p95_ms < rtt_ms + 100 + 40 + FRAME_US / 1000


def test_a_link_too_slow_for_the_tier_falls_behind_and_asks_at_a_bounded_rate() -> None:
    sim = simulate(50, max_frames=16, mbit=2.0)  # 2.4 Mbit/s of P-frames into 2 Mbit/s
    assert sim.behind > 0
    assert 0 < sim.keyframe_requests <= 20 * 2  # at most one per 500 ms per viewer
