"""A tiny discrete-event model of edge -> bottleneck link -> viewer -> ack, driving the edge's own ViewerState
(the same object the edge's sessions use) on a fake clock."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from framecast.edge.pacing import US
from framecast.edge.viewer import OPEN, ViewerConfig, ViewerState
from tests.support.link import FifoLink


@dataclass
class SimResult:
    fps: float
    latency_ms: list[float] = field(default_factory=list)  # capture -> fully received
    window: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        lat = sorted(self.latency_ms)
        return lat[min(len(lat) - 1, int(len(lat) * q))]


def simulate(*, rate_bps: float, rtt_ms: float, frame_bytes: int, fps: float = 30.0, seconds: float = 20.0,
             target_ms: float = 100.0, max_frames: int = 8, jitter_ms: float = 0.0, spike_every: int = 0,
             spike_ms: float = 0.0, seed: int = 1) -> SimResult:
    """Frames are produced at `fps`; the edge sends the newest one when the window allows; the link is a FIFO
    of `rate_bps` bytes/s with `rtt_ms` round trip; the viewer acks on arrival after a random processing delay
    (uniform 0..jitter_ms, plus spike_ms every `spike_every` frames: a busy client)."""
    rng = random.Random(seed)
    state = ViewerState(ViewerConfig(latency_target_us=int(target_ms * 1000), max_inflight_frames=max_frames,
                                     adapt=False), 0, n_tiers=1, rungs=(0,))
    w = state.window
    one_way = int(rtt_ms * 500)
    period = int(US / fps)
    link = FifoLink.per_us(rate_bps, one_way)
    acks: deque[tuple[int, int]] = deque()  # (time the ack reaches the edge, frame id), sorted
    pending: int | None = None  # newest produced frame not yet sent (its capture time = id * period)
    res = SimResult(0.0)
    delivered = 0
    t = 0
    next_frame = 0
    fid = 0
    end = int(seconds * US)
    while t < end:
        # next event: a new frame or an ack
        t_ack = acks[0][0] if acks else end
        t = min(next_frame, t_ack)
        if t == t_ack and acks:
            _, aid = acks.popleft()
            state.on_ack(t, aid)
        else:
            fid += 1
            pending = fid
            next_frame += period
        if pending is not None and state.gate(t) == OPEN:
            cap = (pending - 1) * period
            state.on_sent(t, pending, frame_bytes, cap)
            arrive = int(link.deliver_at(t, frame_bytes))
            if t > 2 * US:
                res.latency_ms.append((arrive - cap) / 1000)
                delivered += 1
            proc = int(rng.uniform(0, jitter_ms) * 1000)
            if spike_every and pending % spike_every == 0:
                proc += int(spike_ms * 1000)
            acks.append((arrive + proc + one_way, pending))
            acks = deque(sorted(acks))
            res.window.append(w.window)
            pending = None
    res.fps = delivered / (seconds - 2)
    return res
