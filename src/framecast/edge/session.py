"""One connected viewer: the I/O shell around its `ViewerState` (see viewer.py), on the event loop, no task.

The bus reader calls `offer()` (never awaits): the frame becomes the viewer's
newest and, when the viewer's gates are open (fps cap, ack window, the
socket's unsent bytes under the budget), goes out at once as the shared
pre-framed bytes. Otherwise it waits, replaced by newer frames, until an
ack (`on_text`), the transport draining (`on_writable`) or a short timer opens
the gate again. Acks are parsed where the bytes arrive (`wsconn.py`) and feed
the window, the glass-to-glass histogram and the tier policy. Video (H.264)
tiers go through an in-order, keyframe-aware queue instead of newest-frame-wins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from starlette.websockets import WebSocket

from framecast import constants as C
from framecast.bus import now_us as wall_us
from framecast.edge.busframe import BusFrame
from framecast.edge.fanout import FanoutHub, Subscriber
from framecast.edge.gop import Decision as GopDecision
from framecast.edge.gop import GopSnapshot, GopViewerQueue
from framecast.edge.metrics import EdgeMetrics, close_label
from framecast.edge.pacing import TierConfig, TokenBucket
from framecast.edge.quota import PinQuota
from framecast.edge.settings import EdgeSettings
from framecast.edge.viewer import WINDOW_FULL, ViewerConfig, ViewerState
from framecast.edge.wsconn import ACK_PREFIX, BUSY, PARTLY, Outlet, ViewerProtocol, text_message
from framecast.ladder import auto_rungs, estimate_frame_sizes, is_video
from framecast.logs import RateLimitedLog
from framecast.protocol import (
    AUTO,
    Ack,
    ClientHello,
    ClientStats,
    ErrorMessage,
    KeyframeNeeded,
    ProtocolError,
    SetPreferences,
    Status,
    TierChanged,
    TierInfo,
    ViewerMessage,
    encode_control,
    parse_viewer_message,
)

log = logging.getLogger("framecast.edge.session")
_drop_log = RateLimitedLog(log, "frames dropped for viewers", interval=30.0)

# the kernel gives no event for "unsent bytes fell": look again after _POLL_FIRST_S, backing off to _POLL_MAX_S
_POLL_FIRST_S: Final = 0.002
_POLL_MAX_S: Final = 0.05
_SIZES_EVERY_US: Final = 1_000_000
_ACK_PREFIX: Final = ACK_PREFIX.decode()
_ACK_LEN: Final = len(_ACK_PREFIX)
CLOSE_GRACE_S: Final = 2.0  # after our close frame, a viewer that does not complete the handshake is aborted


def close_reason(text: str) -> str:
    """A close reason that fits a close frame: at most 123 bytes of UTF-8 (characters are up to 4 bytes)."""
    return text.encode()[:123].decode(errors="ignore")


def mono_us() -> int:
    return time.monotonic_ns() // 1000


def viewer_config(settings: EdgeSettings) -> ViewerConfig:
    return ViewerConfig(
        latency_target_us=int(settings.latency_target_ms * 1000), max_inflight_frames=settings.max_inflight_frames,
        unsent_budget_bytes=settings.unsent_budget_bytes, legacy_budget_bytes=settings.legacy_budget_bytes,
        timeout_us=int(settings.ack_timeout_s * 1e6), adapt=settings.adapt,
        tier=TierConfig(down_hold_us=int(settings.tier_down_hold_s * 1e6),
                        up_hold_us=int(settings.tier_up_hold_s * 1e6),
                        probe_interval_us=int(settings.tier_probe_interval_s * 1e6),
                        probe_duration_us=max(int(settings.tier_up_hold_s * 1e6),
                                              int(settings.tier_down_hold_s * 2e6))))


class ViewerSession:
    """The I/O shell of one viewer of one stream (see the module docstring)."""

    # the hot path's fields first, so that they share a few cache lines (slots are laid out in this order)
    __slots__ = (  # noqa: RUF023
        "closed", "started", "feed_tier", "vq", "queue", "outlet", "state", "bucket", "acks", "metrics", "_poll_s",
        "_timer", "pending_tier",
        "_counted_tier", "_folded", "_live", "_max_text", "_sizes", "_sizes_until_us", "_switch_reason", "address",
        "cap", "client_id", "close_code", "counters", "done", "expires_at", "hub", "on_close", "pending_vq",
        "pin_quota", "pinned", "policy", "protocol", "settings", "source_fps", "started_us", "stream", "tier_names",
        "tiers", "transport", "video_names", "window", "ws",
    )

    def __init__(self, ws: WebSocket, *, hub: FanoutHub, settings: EdgeSettings, metrics: EdgeMetrics,
                 stream: str, tiers: tuple[TierInfo, ...], source_fps: float, transport: Any = None,
                 protocol: Any = None, hello: ClientHello | None = None) -> None:
        self.ws, self.hub, self.settings, self.metrics = ws, hub, settings, metrics
        self.stream, self.tiers, self.source_fps = stream, tiers, source_fps
        self.counters = metrics.stream(stream)  # this stream's sent/bytes/drop counters
        self.tier_names = [t.name for t in tiers]
        self.transport = transport
        self.protocol: ViewerProtocol | None = protocol if isinstance(protocol, ViewerProtocol) else None
        self.outlet = Outlet(transport) if transport is not None else None
        now = mono_us()
        self.started_us = now
        rungs = auto_rungs(tiers)
        self.state = ViewerState(viewer_config(settings), now, n_tiers=len(tiers), rungs=rungs)
        self.window, self.cap, self.policy = self.state.window, self.state.cap, self.state.policy
        self.queue: deque[BusFrame] = deque()
        self.feed_tier: str = self.tier_names[rungs[0]]
        self._counted_tier = self.feed_tier  # the tier this viewer's unfolded frame count belongs to
        self._folded = [0, 0, 0]  # frames, bytes, acks already added to the replica's counters
        self.acks = 0
        self.pending_tier: str | None = None
        self._switch_reason = ""
        # video (H.264) tiers go through an in-order, keyframe-aware queue instead of newest-frame-wins
        self.video_names = frozenset(t.name for t in tiers if is_video(t))
        self.vq: GopViewerQueue[BusFrame] | None = None  # the feeding tier's queue, when it is a video tier
        self.pending_vq: GopViewerQueue[BusFrame] | None = None
        self.bucket = TokenBucket(settings.control_rate, settings.control_rate * 2, now)
        self._max_text = settings.max_message_bytes
        self._sizes: list[float | None] = []
        self._sizes_until_us = 0
        self.client_id = ""
        self.started = False
        self.closed = False
        self.close_code: int | None = None
        self.expires_at: float | None = None  # wall-clock seconds when the viewer's token expires
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._poll_s = _POLL_FIRST_S
        self._live: bool | None = None
        self.on_close: Callable[[ViewerSession], None] | None = None
        # tier pins of one address are capped (edge/quota.py): the app sets the quota and the viewer's address
        self.pin_quota: PinQuota | None = None
        self.address = ""
        self.pinned: str | None = None
        if hello is not None:
            self.apply_hello(hello)

    @property
    def acking(self) -> bool:
        return self.state.acking

    @property
    def frames_sent(self) -> int:
        return self.state.frames_sent

    # --- lifecycle -------------------------------------------------------
    def start(self, first: BusFrame | None = None) -> None:
        """Join the readers; `first` (the stream's freshest frame of any tier) goes out at once.

        From here on the protocol hands the viewer's messages to `on_text` (those that came during the
        handshake first) and frames go straight to the socket.
        """
        self.hub.watch(self)
        self.started = True
        if self.feed_tier in self.video_names:
            self.vq = self._join_video(self.feed_tier)
            self.state.set_video(True)
            if first is not None and not self.vq.queued_frames:
                # no keyframe cached yet (the tier was not being encoded): a JPEG still until it comes
                self.queue.append(first)
        else:
            latest = self.hub.subscribe(self.stream, self.feed_tier, self)
            if latest is not None and (first is None or latest.capture_us >= first.capture_us):
                self._queue(latest)
            elif first is not None:
                self.queue.append(first)  # another tier's frame: a picture now beats the best tier later
        if self.protocol is not None:
            self.protocol.attach(self)
        self._pump()

    async def finish(self) -> None:
        """Leave the readers (the WebSocket is already closed or lost)."""
        self.closed = True
        self._cancel_timer()
        self._pin(None)
        self.hub.unwatch(self)
        self.hub.unsubscribe(self.stream, self.feed_tier, self)
        if self.pending_tier is not None:
            self.hub.unsubscribe(self.stream, self.pending_tier, self)
        self.queue.clear()
        self.vq = self.pending_vq = None
        if not self.done.done():
            self.done.set_result(None)

    async def close(self, code: int, reason: str = "") -> None:
        self.close_now(code, reason)

    def close_now(self, code: int, reason: str = "") -> None:
        """Close with `code` (once): an error message, then the close frame; a viewer that does not answer
        within CLOSE_GRACE_S (one that stopped reading) is aborted."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._cancel_timer()
        self.metrics.closes.labels(close_label(code)).inc()
        reason = close_reason(reason or C.CLOSE_REASONS.get(code, ""))
        if self.protocol is None or self.outlet is None:
            self.abort()
            return
        if code != C.CLOSE_VIEWER_TIMEOUT:  # a viewer that stopped reading cannot take it anyway
            self.outlet.write(text_message(encode_control(ErrorMessage(code, reason))))
        self.protocol.close_viewer(code, reason, CLOSE_GRACE_S)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # --- from the protocol (on the loop, never blocks) ---------------------
    def on_text(self, text: str) -> None:
        """One text message from the viewer: an ack (fast path) or another control message."""
        if self.closed:
            return
        if len(text) > self._max_text:
            self.close_now(C.CLOSE_MESSAGE_TOO_BIG, C.CLOSE_REASONS[C.CLOSE_MESSAGE_TOO_BIG])
            return
        # fast path for the one message sent per frame; anything else takes the full parser
        if text.startswith(_ACK_PREFIX) and text[-1] == "}":
            digits = text[_ACK_LEN:-1]
            if digits.isascii() and digits.isdecimal():
                self.on_ack_message(int(digits))
                return
        if not self.bucket.take(time.monotonic_ns() // 1000):
            self.close_now(C.CLOSE_POLICY_VIOLATION, "too many control messages")
            return
        try:
            self.on_message(parse_viewer_message(text))
        except ProtocolError as exc:
            self.close_now(C.CLOSE_BAD_MESSAGE, f"malformed control message: {exc}")

    def on_ack_message(self, frame_id: int) -> None:
        """An ack, as the protocol's fast path reads it (a control message: the bucket counts it too)."""
        if self.closed:
            return
        now = time.monotonic_ns() // 1000
        if not self.bucket.take(now):
            self.close_now(C.CLOSE_POLICY_VIOLATION, "too many control messages")
            return
        self.acks += 1
        self.on_ack(frame_id, now)

    def on_binary(self) -> None:
        self.close_now(C.CLOSE_UNSUPPORTED_DATA, C.CLOSE_REASONS[C.CLOSE_UNSUPPORTED_DATA])

    def on_writable(self) -> None:
        self.state.writing_since_us = None
        self._pump()

    def on_lost(self, code: int) -> None:
        """The connection ended (the viewer's close frame, a protocol error, or TCP gone)."""
        if not self.closed:
            self.closed = True
            self.metrics.closes.labels(close_label(code)).inc()
        self._cancel_timer()
        if not self.done.done():
            self.done.set_result(None)

    # --- from the bus reader (must never block) ---------------------------
    def offer(self, tier: str, frame: BusFrame) -> None:
        """A new frame of `tier`: it goes out now when the viewer's gates are open, else waits as the newest."""
        if self.closed:
            return
        if tier != self.feed_tier:
            if tier != self.pending_tier:
                return
            if self.pending_vq is not None:
                self._gop(self.pending_vq.offer(frame, frame.frame_id, frame.keyframe, frame.nbytes, mono_us()), tier)
                if self.pending_vq.started:  # the new tier has a keyframe queued: switch now
                    self._complete_switch()
                    self._pump()
                return
            self._complete_switch()
        if self.vq is not None:
            d = self.vq.offer(frame, frame.frame_id, frame.keyframe, frame.nbytes, mono_us())
            self._gop(d, tier)
            if d.queued:
                self.queue.clear()  # a JPEG still shown while joining is superseded by the video
                self._pump()
            return
        if self.queue or not self.started or self.outlet is None:
            self._queue(frame)
            self._pump()
        else:
            self._send_newest(frame)  # the common case: nothing waiting, the gates decide about this frame

    def _queue(self, frame: BusFrame) -> None:
        q = self.queue
        if q:  # one slot: the sender only ever sends the newest frame, an older one queued is superseded
            q.popleft()
            self.counters.drop_queue_full.inc()
            _drop_log.event("queue_full")
        q.append(frame)

    def on_gap(self, tier: str) -> None:
        """The bus reader of a video tier missed frames: resume that tier from a keyframe."""
        vq = self.vq if tier == self.feed_tier else self.pending_vq if tier == self.pending_tier else None
        if vq is not None:
            self._gop(vq.break_chain(mono_us()), tier)

    # --- video tiers -----------------------------------------------------
    def _join_video(self, tier: str) -> GopViewerQueue[BusFrame]:
        """Subscribe to a video tier and start a queue from its cached GOP (or a keyframe request)."""
        vq: GopViewerQueue[BusFrame] = GopViewerQueue()
        self.hub.subscribe(self.stream, tier, self, video=True)
        reader = self.hub.reader(self.stream, tier)
        snapshot = reader.gop.snapshot() if reader is not None and reader.gop is not None else GopSnapshot()
        self._gop(vq.join(snapshot, mono_us()), tier)
        return vq

    def _gop(self, d: GopDecision, tier: str) -> None:
        if d.dropped and d.drop_reason is not None:
            self.counters.drop(d.drop_reason).inc(d.dropped)
        if d.request_keyframe:
            self.hub.request_keyframe(self.stream, tier)
        # (with a switch pending, or the old tier's frames still draining, the policy has moved already: falling
        # behind then is no news about the new tier)
        if d.reason == "fell-behind" and tier == self.feed_tier:
            decision = self.state.fell_behind(mono_us(), switch_pending=self.pending_tier is not None)
            if decision is not None:
                self._switch_to(decision.tier, decision.reason)

    # --- control messages ------------------------------------------------
    def apply_hello(self, hello: ClientHello) -> None:
        self.client_id = hello.client_id
        self.apply_set(SetPreferences(tier=hello.tier, max_fps=hello.max_fps))

    def apply_set(self, msg: SetPreferences) -> None:
        now = mono_us()
        if msg.max_fps is not None:
            self.cap.set(msg.max_fps)
        if msg.tier is not None:
            if msg.tier == AUTO:
                self._pin(None)
                self.policy.pin(None, now)
            else:
                if msg.tier not in self.tier_names:
                    raise ProtocolError(f"unknown tier {msg.tier!r}; this viewer may use {self.tier_names}")
                if not self._pin(msg.tier):
                    self.send_control(encode_control(ErrorMessage(
                        C.CLOSE_TRY_AGAIN_LATER, f"tier pin {msg.tier!r} refused: viewers from this address pin "
                        f"{self.settings.pinned_tiers_per_ip} tiers of this stream already; the tier stays as it is")))
                    return
                decision = self.policy.pin(self.tier_names.index(msg.tier), now)
                if decision is not None and not self.started:
                    self.feed_tier = msg.tier  # not started yet (a hello before the first frame): start there
                elif decision is not None:
                    self._switch_to(decision.tier, decision.reason)
                elif msg.tier == self.feed_tier and self.vq is not None and self.pending_tier is None:
                    # a `set` to the current video tier: the viewer's decoder lost its state, resync at a keyframe
                    self._gop(self.vq.break_chain(now), msg.tier)

    def _pin(self, tier: str | None) -> bool:
        """Hold a pin of `tier` in the address's quota (None: hold none); False when the quota refuses."""
        if tier == self.pinned:
            return True
        if tier is not None and self.pin_quota is not None \
                and not self.pin_quota.acquire(self.address, self.stream, tier):
            return False
        if self.pinned is not None and self.pin_quota is not None:
            self.pin_quota.release(self.address, self.stream, self.pinned)
        self.pinned = tier
        return True

    def on_message(self, msg: ViewerMessage) -> None:
        """Handle a parsed control message; raises ProtocolError for a bad one."""
        if isinstance(msg, Ack):
            self.acks += 1
            self.on_ack(msg.frame_id, mono_us())
        elif isinstance(msg, SetPreferences):
            self.metrics.control.labels("set").inc()
            self.apply_set(msg)
        elif isinstance(msg, ClientHello):
            self.metrics.control.labels("hello").inc()
            self.apply_hello(msg)
        elif isinstance(msg, ClientStats):
            self.metrics.control.labels("stats").inc()
        elif isinstance(msg, KeyframeNeeded):
            self.metrics.control.labels("keyframe").inc()
            if self.vq is not None and self.pending_tier is None:
                # the viewer's decoder lost its reference: skip to a keyframe (and ask the encoder for one)
                self._gop(self.vq.break_chain(mono_us()), self.feed_tier)

    def on_ack(self, frame_id: int, now: int) -> None:
        st = self.state
        result = st.on_ack(now, frame_id)
        if result is None:
            return
        metrics = self.metrics
        g2g = time.time_ns() // 1000 - result.capture_us
        if g2g >= 0:
            metrics.glass_to_glass.observe(g2g / 1e6)
        metrics.frame_delay.observe(result.delay_us / 1e6)
        if self.queue or self.vq is not None:
            self._pump()  # the window has room again
        if now >= st.next_adapt_us and st.adapt_due(now):
            self._adapt(now)

    # --- stream state and timeouts (from the hub's housekeeping) ----------
    def on_stream_state(self, live: bool, detail: str) -> None:
        if live == self._live:
            return
        self._live = live
        self.send_control(encode_control(Status("live" if live else "stalled", detail)))

    def send_control(self, text: str) -> None:
        """A control message to the viewer: written at once, in order with the frames."""
        if not self.closed and self.outlet is not None:
            self.outlet.write(text_message(text))

    def check(self, now_mono: float) -> None:
        """Once a second: token expiry, viewers that stopped acking or reading (4008), keyframe re-requests."""
        if self.closed:
            return
        if self.expires_at is not None and time.time() > self.expires_at:
            self.close_now(C.CLOSE_AUTH_FAILED, "authentication failed: token expired")
            return
        now = mono_us()
        for vq, tier in ((self.vq, self.feed_tier), (self.pending_vq, self.pending_tier)):
            if vq is not None and tier is not None and vq.poll(now):
                self.hub.request_keyframe(self.stream, tier)  # still waiting for a keyframe: ask again
        timeout = self.state.timed_out(now)
        if timeout is not None:
            self.close_now(C.CLOSE_VIEWER_TIMEOUT, f"viewer timed out: no {timeout.what} for "
                           f"{self.settings.ack_timeout_s:g}s")
        elif self.state.adapt_due(now):
            self._adapt(now)

    # --- tier switching --------------------------------------------------
    def _switch_to(self, index: int, reason: str) -> None:
        name = self.tier_names[index]
        if name == self.feed_tier and self.pending_tier is None:
            return
        if self.pending_tier is not None and self.pending_tier != name:
            self.hub.unsubscribe(self.stream, self.pending_tier, self)
            self.pending_tier = None
            self.pending_vq = None
        if name == self.feed_tier:
            return
        direction = "up" if index < self.tier_names.index(self.feed_tier) else "down"
        self.metrics.tier_switches.labels(direction).inc()
        self._switch_reason = reason
        self.pending_tier = name
        # make before break: the old tier keeps feeding until the new one can be shown
        if name in self.video_names:
            self.pending_vq = self._join_video(name)  # ... from a keyframe
            if self.pending_vq.started:
                self._complete_switch()
            return
        latest = self.hub.subscribe(self.stream, name, self)
        if latest is not None and self.state.is_fresh(latest.capture_us):  # ... with a newer frame
            self.offer(name, latest)

    def _complete_switch(self) -> None:
        old, new = self.feed_tier, self.pending_tier
        assert new is not None
        self.fold_counts()  # frames so far were the old tier's
        self.feed_tier, self.pending_tier = new, None
        self._counted_tier = new
        self.hub.unsubscribe(self.stream, old, self)
        if self.queue:
            self.counters.drop("tier_switch").inc(len(self.queue))
            self.queue.clear()
        if self.vq is not None and self.vq.queued_frames:
            self.counters.drop("tier_switch").inc(self.vq.queued_frames)
        self.vq, self.pending_vq = self.pending_vq, None
        self.state.set_video(self.vq is not None)
        self.state.switched(mono_us())
        self.send_control(encode_control(TierChanged(new, self._switch_reason)))

    def _adapt(self, now: int) -> None:
        reader = self.hub.reader(self.stream, self.feed_tier)
        source_fps = reader.fps(wall_us()) if reader is not None and reader.frames >= 10 else self.source_fps
        if now >= self._sizes_until_us:  # the tiers' frame sizes move slowly: looked up once a second
            self._sizes, self._sizes_until_us = self._frame_sizes(), now + _SIZES_EVERY_US
        decision = self.state.adapt(now, target_fps=source_fps, frame_sizes=self._sizes,
                                    switch_pending=self.pending_tier is not None,
                                    waiting_for_keyframe=self.vq is not None and self.vq.waiting_for_keyframe)
        if decision is not None:
            self._switch_to(decision.tier, decision.reason)

    def _frame_sizes(self) -> list[float | None]:
        """Mean frame size per tier: measured where a reader runs, else estimated (`ladder.estimate_frame_sizes`)."""
        readers = [self.hub.reader(self.stream, tier.name) for tier in self.tiers]
        measured = [r.mean_bytes if r is not None else None for r in readers]
        return estimate_frame_sizes(self.tiers, measured, self.source_fps)

    # --- the sender ------------------------------------------------------
    def _pump(self) -> None:
        """Write what the gates allow now (called on a frame, an ack, the socket draining, a timer)."""
        if self.closed or not self.started or self.outlet is None:
            return
        if self.vq is not None:
            self._pump_video()
            return
        q = self.queue
        if not q:
            return
        frame = q.pop()
        if q:
            self.counters.drop_stale.inc(len(q))
            q.clear()
        self._send_newest(frame)

    def _send_newest(self, frame: BusFrame) -> None:
        """Send `frame` if the gates allow it now, else keep it as the one waiting (newest wins)."""
        st = self.state
        if frame.capture_us <= st.last_sent_capture_us:
            return  # never the same moment twice, never back in time (joins, tier switches)
        now = time.monotonic_ns() // 1000
        gate = st.gate(now)
        if gate:
            self.queue.append(frame)
            if gate != WINDOW_FULL:
                self._later(gate / 1e6)  # the fps cap: an ack would not open it
            return
        outlet = self.outlet
        assert outlet is not None
        budget: int | None = None
        if st.acking:
            # every frame acked: the kernel holds nothing unsent (no syscall); else ask it
            budget = st.budget() if st.window.inflight else None
        else:  # no acks: TCP's own say how much the link holds (and how much is unsent)
            path = outlet.path()
            if path is None:
                budget = st.budget()
            elif path[1] > st.budget():
                budget = -1  # over the socket budget (TCP_INFO said so): refused below, as the ioctl would
            else:
                wait = st.path_wait_us(path[0], path[2], path[3])
                if wait:
                    self.queue.append(frame)
                    st.on_blocked(now)  # no frame goes while the path stays full: a viewer that stopped reading
                    self._later(wait / 1e6)
                    return
        written = 0 if budget == -1 else outlet.write_frame(frame.wire, budget)
        if written <= 0:
            self.queue.append(frame)  # keep the newest
            if written == BUSY:  # the last frame is still leaving the transport: its drain calls on_writable
                if st.writing_since_us is None:
                    st.writing_since_us = now
                return
            st.on_blocked(now)  # over the unsent budget: the kernel gives no event, look again shortly
            self._later(self._poll_s)
            return
        self._sent_one(frame, now, written)

    def _pump_video(self) -> None:
        st, outlet, vq = self.state, self.outlet, self.vq
        assert outlet is not None and vq is not None
        while not self.closed and (vq.queued_frames or self.queue):
            now = time.monotonic_ns() // 1000
            if st.gate(now, video=True):
                return  # the window: an ack calls again
            if outlet.buffered():  # the last frame is still leaving the transport: resume_writing calls again
                if st.writing_since_us is None:
                    st.writing_since_us = now
                return
            if (not st.acking or st.window.inflight) and outlet.unsent() > st.budget():
                st.on_blocked(now)  # bytes stay gated for video too: look again shortly
                self._later(self._poll_s)
                return
            if not vq.queued_frames:  # a JPEG still while the video tier waits for its keyframe
                frame = self.queue.pop()
                self.queue.clear()
                if not st.is_fresh(frame.capture_us):
                    continue
            else:
                popped = vq.pop()  # in order: every frame of the chain, from a keyframe on
                if popped is None:
                    return
                frame = popped
            # never refused: no budget given, the transport was empty
            self._sent_one(frame, now, outlet.write_frame(frame.wire))

    def _sent_one(self, frame: BusFrame, now: int, written: int) -> None:
        st = self.state
        self._poll_s = _POLL_FIRST_S
        acking = st.acking
        if acking:
            self.metrics.inflight.observe(len(st.window.inflight))
        if st.on_sent(now, frame.frame_id, len(frame.data), frame.capture_us):
            self.metrics.first_frame.observe((time.monotonic_ns() // 1000 - self.started_us) / 1e6)
        if written == PARTLY:  # the transport sends the rest, then on_writable
            st.writing_since_us = now
        if not acking and st.adapt_due(now):
            self._adapt(now)

    # --- counters: plain ints on the viewer, summed at scrape time ------------
    def unfolded(self) -> tuple[str, str, int, int, int]:
        """(stream, tier, frames, bytes, acks) counted by this viewer, not yet in the replica's counters."""
        st = self.state
        return (self.stream, self._counted_tier, st.frames_sent - self._folded[0], st.bytes_sent - self._folded[1],
                self.acks - self._folded[2])

    def fold_counts(self) -> None:
        """Move this viewer's counts into the replica's counters (before a tier change, and when it leaves).

        Our own record first, the counter second: a scrape in between sees a little less, never more (a
        counter that went down would read as a reset).
        """
        _, tier, frames, nbytes, acks = self.unfolded()
        f = self._folded
        f[0] += frames
        f[1] += nbytes
        f[2] += acks
        self.counters.sent(tier).inc(frames)
        self.counters.bytes_sent.inc(nbytes)
        self.metrics.acks.inc(acks)
        self._counted_tier = self.feed_tier

    def _later(self, delay_s: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._poll_s = min(self._poll_s * 2, _POLL_MAX_S)  # backs off while looks keep failing
        self._pump()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def offer_all(subscribers: Iterable[Subscriber], tier: str, frame: BusFrame) -> None:
    """One bus frame to every subscriber of its tier: the fan-out pass of a bus reader (fanout.py).

    It lives here so that, compiled, each viewer's `offer` is a direct call: the two branches make the same
    call, but in the first mypyc knows the class and skips the attribute lookup. A copy of the set is walked:
    an offer may complete a tier switch, which unsubscribes the viewer from this tier.
    """
    for sub in tuple(subscribers):
        if isinstance(sub, ViewerSession):
            sub.offer(tier, frame)
        else:  # a snapshot or join waiter (fanout.py)
            sub.offer(tier, frame)
