"""The per-viewer decisions, sans I/O: may a frame go now, what an ack means, which tier, is the viewer stuck.

`ViewerState` owns one viewer's ack window, frame-rate cap, delivered-rate
meter, tier policy and the judging of a new tier, and its timeouts. It reads
no clock and touches no socket: every method takes `now` (integer
microseconds, monotonic) and returns what the I/O shell (`session.py`) must
do. Unit tests and the link simulators drive this very object on a fake clock.

Gates, checked in this order for each frame (`gate`): the viewer's fps cap,
then (once it acks) the window of unacknowledged frames; for a viewer that
never acks, the bytes TCP has in flight (`path_wait_us`, from TCP_INFO). The
last gate is the socket's unsent bytes under `budget()`: the shell reports a
refused write with `on_blocked`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from framecast.edge.pacing import AckResult, FpsCap, InflightWindow, RateMeter, TierConfig, TierDecision, TierPolicy

ADAPT_EVERY_US: Final = 200_000
JUDGE_WAIT_MAX_US: Final = 3_000_000  # most time a new tier waits for its first ack before it is judged anyway
PATH_POLL_MIN_US: Final = 2_000  # a frame held for the path is looked at again within these bounds
PATH_POLL_MAX_US: Final = 50_000
OPEN: Final = 0
WINDOW_FULL: Final = -1  # an ack will open it (positive gate values: microseconds until the fps cap allows a frame)


@dataclass(frozen=True, slots=True)
class ViewerConfig:
    """The numbers the decisions need (from EdgeSettings; microseconds and bytes)."""

    latency_target_us: int = 50_000
    max_inflight_frames: int = 8
    unsent_budget_bytes: int = 16_384
    legacy_budget_bytes: int = 65_536
    timeout_us: int = 10_000_000
    adapt: bool = True
    tier: TierConfig = field(default_factory=TierConfig)


@dataclass(frozen=True, slots=True)
class Timeout:
    """The viewer neither acked nor read for the timeout: close it (4008)."""

    what: str  # "acks" or "reads"
    since_us: int


class ViewerState:
    """One viewer's pacing, tier and liveness state (see the module docstring)."""

    __slots__ = (
        "acking",
        "blocked_since_us",
        "bytes_sent",
        "cap",
        "cfg",
        "delivered",
        "frames_sent",
        "judge_deadline_us",
        "judge_from_id",
        "last_ack_us",
        "last_sent_capture_us",
        "next_adapt_us",
        "policy",
        "started_us",
        "window",
        "writing_since_us",
    )

    def __init__(self, config: ViewerConfig, now: int, *, n_tiers: int, rungs: tuple[int, ...],
                 start_rung: int | None = None) -> None:
        self.cfg = config
        self.window = InflightWindow(config.latency_target_us, max_frames=config.max_inflight_frames)
        self.cap = FpsCap(0.0)
        self.policy = TierPolicy(n_tiers, rungs[0] if start_rung is None else start_rung, now, config.tier,
                                 rungs=rungs)
        self.delivered = RateMeter()
        self.delivered.reset(now)
        self.started_us = now
        self.acking = False
        self.last_ack_us: int | None = None
        self.blocked_since_us: int | None = None  # the socket refused a frame and none went since
        self.writing_since_us: int | None = None  # a frame is still in the transport buffer since then
        # after a tier switch: id of the new tier's first frame sent (-1: not sent yet); until it is acked the
        # acks are the old tier's frames draining from the link, so the new tier is not judged yet
        self.judge_from_id: int | None = None
        self.judge_deadline_us = 0  # ... but no longer than this (ids restart when the source restarts)
        self.last_sent_capture_us = -1
        self.frames_sent = 0
        self.bytes_sent = 0
        self.next_adapt_us = 0

    # --- sending ---------------------------------------------------------
    def budget(self) -> int:
        """Unsent bytes the socket may hold before the next frame (small once acks pace the viewer)."""
        return self.cfg.unsent_budget_bytes if self.acking else self.cfg.legacy_budget_bytes

    def set_video(self, video: bool) -> None:
        """A video tier may skip no frame: allow a longer pipe (frames are small; bytes stay gated)."""
        w = self.window
        w.max_frames = max(self.cfg.max_inflight_frames, 16) if video else self.cfg.max_inflight_frames
        w.window = min(w.window, float(w.max_frames))

    def gate(self, now: int, *, video: bool = False) -> int:
        """OPEN (0): a frame may go now; WINDOW_FULL: wait for an ack; > 0: microseconds until the cap allows."""
        if self.cap.interval_us and not video:  # a video tier cannot skip frames for a cap
            wait = self.cap.wait_us(now)
            if wait:
                return wait
        if self.acking:
            w = self.window
            if len(w.inflight) >= w.min_frames and len(w.inflight) >= w.window:  # InflightWindow.can_send
                return WINDOW_FULL
        return OPEN

    def path_wait_us(self, in_flight: int, rate_bytes_s: int, min_rtt_us: int) -> int:
        """For a viewer that does not ack: how long to hold the next frame (0: send), from TCP's own view.

        The socket budget alone lets the bottleneck's queue fill (a frame the link cannot carry in its
        interval, a probe up, stands in front of every later one). Bytes in flight (sent, not acked by the
        viewer's TCP) are held under what the link delivers in its base round trip plus the latency target,
        as the ack window does for acking viewers; never under the unsent budget (a frame always goes to an
        empty path).
        """
        window = max(self.cfg.unsent_budget_bytes,
                     rate_bytes_s * (min_rtt_us + self.cfg.latency_target_us) // 1_000_000)
        if in_flight <= window:
            return 0
        drain_us = (in_flight - window) * 1_000_000 // max(rate_bytes_s, 1)
        return min(max(drain_us, PATH_POLL_MIN_US), PATH_POLL_MAX_US)

    def is_fresh(self, capture_us: int) -> bool:
        """Never the same moment twice, never back in time (joins and tier switches mix tiers)."""
        return capture_us > self.last_sent_capture_us

    def on_blocked(self, now: int) -> None:
        if self.blocked_since_us is None:
            self.blocked_since_us = now

    def on_sent(self, now: int, frame_id: int, nbytes: int, capture_us: int) -> bool:
        """A frame was written (wholly or in part: the rest follows from the transport). True: the first one."""
        self.blocked_since_us = None
        self.last_sent_capture_us = capture_us
        if self.judge_from_id == -1:
            self.judge_from_id = frame_id
        if self.acking:
            self.window.on_send(frame_id, nbytes, capture_us, now)
        else:
            self.delivered.add(now, nbytes)
        if self.cap.interval_us:
            self.cap.on_send(now)
        self.frames_sent += 1
        self.bytes_sent += nbytes
        return self.frames_sent == 1

    # --- acks ------------------------------------------------------------
    def on_ack(self, now: int, frame_id: int) -> AckResult | None:
        """An ack from the viewer: the frames it releases, or None (the first ack, a duplicate, an unknown id).

        The first ack only says the viewer acks: frames are tracked in the window from then on (and the
        socket budget shrinks to `unsent_budget_bytes`).
        """
        if not self.acking:
            self.acking = True
            self.last_ack_us = now
            return None
        result = self.window.on_ack(frame_id, now)
        if result is None:
            return None
        self.last_ack_us = now
        if self.judge_from_id is not None and 0 <= self.judge_from_id <= frame_id:
            self.judge_from_id = None  # the new tier's first frame is through: measure it from here
            self.delivered.reset(now)
        self.delivered.add(now, result.acked_bytes, result.acked_frames)
        return result

    # --- tiers -----------------------------------------------------------
    def switched(self, now: int) -> None:
        """A new tier now feeds the viewer: judge it from its own first acked frame (at most JUDGE_WAIT_MAX_US)."""
        self.delivered.reset(now)
        self.judge_from_id = -1 if self.acking else None
        self.judge_deadline_us = now + JUDGE_WAIT_MAX_US

    def adapt_due(self, now: int) -> bool:
        return self.cfg.adapt and now >= self.next_adapt_us and len(self.policy.rungs) > 1

    def adapt(self, now: int, *, target_fps: float, frame_sizes: list[float | None], switch_pending: bool = False,
              waiting_for_keyframe: bool = False) -> TierDecision | None:
        """The tier decision of this moment (call when `adapt_due`); None: stay.

        `frame_sizes[i]` is tier i's mean frame size (None: unknown). While a switch is pending, or the new
        tier's first frame is not acked yet, or a video tier waits for a keyframe, nothing is judged.
        """
        self.next_adapt_us = now + ADAPT_EVERY_US
        if self.judge_from_id is not None and now > self.judge_deadline_us:
            self.judge_from_id = None
            self.delivered.reset(now)
        if switch_pending or self.judge_from_id is not None:
            return None
        if waiting_for_keyframe:
            self.delivered.reset(now)  # waiting for a keyframe is not a slow link: measure from the resync
            return None
        if self.cap.max_fps > 0:
            target_fps = min(target_fps, self.cap.max_fps)
        d = self.delivered
        return self.policy.update(now, delivered_fps=d.rate(now), target_fps=target_fps,
                                  acked_bytes_per_s=d.bytes_per_s(now), need_bytes_per_frame=frame_sizes,
                                  measure_span_us=d.span_us(now))

    def fell_behind(self, now: int, *, switch_pending: bool = False) -> TierDecision | None:
        """A video tier's queue overflowed: one tier down (not while a switch is pending or being judged)."""
        if switch_pending or self.judge_from_id is not None or not self.cfg.adapt:
            return None
        return self.policy.fell_behind(now)

    # --- liveness --------------------------------------------------------
    def timed_out(self, now: int) -> Timeout | None:
        """The viewer stopped acking (frames in flight, no ack) or reading (writes refused) for the timeout."""
        since: int | None = self.writing_since_us
        if self.acking and self.window.inflight:
            oldest = self.window.oldest_unacked_us() or now
            unacked = max(oldest, self.last_ack_us or oldest)
            since = unacked if since is None else min(since, unacked)
        elif not self.acking and self.blocked_since_us is not None:
            since = self.blocked_since_us if since is None else min(since, self.blocked_since_us)
        if since is not None and now - since > self.cfg.timeout_us:
            return Timeout("acks" if self.acking else "reads", since)
        return None
