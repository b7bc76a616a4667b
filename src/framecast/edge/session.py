"""One connected viewer: its bounded queue, its own sender task, its pacing and tier state.

The bus reader calls `offer()` (never awaits): the frame goes into a queue of
1-3 frames that drops its oldest entry when full. The sender task writes the
newest queued frame when the viewer's window of unacknowledged frames has room
and the socket's unsent bytes are under budget (see `pacing.py`), and yields
to the event loop between frames. Acks from the viewer feed the window, the
glass-to-glass histogram and the tier policy.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from framecast import constants as C
from framecast.bus import now_us as wall_us
from framecast.edge.fanout import BusFrame, FanoutHub, auto_rungs, is_video
from framecast.edge.metrics import EdgeMetrics
from framecast.edge.pacing import FpsCap, InflightWindow, RateMeter, TierConfig, TierPolicy
from framecast.edge.quota import PinQuota
from framecast.edge.settings import EdgeSettings
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
)
from framecast.video.gop import Decision as GopDecision
from framecast.video.gop import GopSnapshot, GopViewerQueue

log = logging.getLogger("framecast.edge.session")
_drop_log = RateLimitedLog(log, "frames dropped for viewers", interval=30.0)

SIOCOUTQNSD = 0x894B  # Linux: bytes in the send queue not yet sent (linux/sockios.h)
_ADAPT_EVERY_US = 200_000
_JUDGE_WAIT_MAX_US = 3_000_000  # most time a new tier waits for its first ack before it is judged anyway
_LEGACY_POLL_S = (0.002, 0.05)
CLOSE_GRACE_S = 2.0  # after our close frame, a viewer that does not complete the handshake is aborted
_background: set[asyncio.Task[None]] = set()  # close tasks started from sync code, kept referenced


def close_reason(text: str) -> str:
    """A close reason that fits a close frame: at most 123 bytes of UTF-8 (characters are up to 4 bytes)."""
    return text.encode()[:123].decode(errors="ignore")


def mono_us() -> int:
    return time.monotonic_ns() // 1000


class UnsentProbe:
    """Bytes written by the app but not yet sent: transport buffer + kernel send queue (Linux)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._fd = -1
        self._buf = array.array("i", [0])
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                fd = sock.fileno()
                fcntl.ioctl(fd, SIOCOUTQNSD, self._buf, True)
                self._fd = fd

    @property
    def kernel_visible(self) -> bool:
        return self._fd >= 0

    def unsent(self) -> int:
        t = self.transport
        if t is None:
            return 0
        n: int = t.get_write_buffer_size()
        if self._fd >= 0 and not t.is_closing():
            try:
                fcntl.ioctl(self._fd, SIOCOUTQNSD, self._buf, True)
                n += self._buf[0]
            except OSError:
                self._fd = -1
        return n


class ViewerSession:
    """State and sender task of one viewer of one stream."""

    def __init__(self, ws: WebSocket, *, hub: FanoutHub, settings: EdgeSettings, metrics: EdgeMetrics,
                 stream: str, tiers: tuple[TierInfo, ...], source_fps: float, transport: Any = None,
                 protocol: Any = None, hello: ClientHello | None = None) -> None:
        self.ws, self.hub, self.settings, self.metrics = ws, hub, settings, metrics
        self.stream, self.tiers, self.source_fps = stream, tiers, source_fps
        self.counters = metrics.stream(stream)  # this stream's sent/bytes/drop counters
        self.tier_names = [t.name for t in tiers]
        self.transport, self.protocol = transport, protocol
        self.probe = UnsentProbe(transport)
        now = mono_us()
        self.started_us = now
        self.queue: deque[BusFrame] = deque()
        self.controls: deque[str] = deque()
        self.wake = asyncio.Event()
        self.window = InflightWindow(int(settings.latency_target_ms * 1000), max_frames=settings.max_inflight_frames)
        self.cap = FpsCap(0.0)
        rungs = auto_rungs(tiers)
        self.policy = TierPolicy(len(tiers), rungs[0], now, TierConfig(
            down_hold_us=int(settings.tier_down_hold_s * 1e6), up_hold_us=int(settings.tier_up_hold_s * 1e6),
            probe_interval_us=int(settings.tier_probe_interval_s * 1e6),
            probe_duration_us=max(int(settings.tier_up_hold_s * 1e6), int(settings.tier_down_hold_s * 2e6))),
            rungs=rungs)
        self.delivered = RateMeter()
        self.delivered.reset(now)
        # after a tier switch: id of the new tier's first frame sent (-1: not sent yet); until it is acked the
        # acks are the old tier's frames draining from the link, so the new tier is not judged yet
        self.judge_from_id: int | None = None
        self.judge_deadline_us = 0  # ... but no longer than this (ids restart when the source restarts)
        self.feed_tier: str = self.tier_names[rungs[0]]
        self.pending_tier: str | None = None
        # video (H.264) tiers go through an in-order, keyframe-aware queue instead of newest-frame-wins
        self.video_names = frozenset(t.name for t in tiers if is_video(t))
        self.vq: GopViewerQueue[BusFrame] | None = None  # the feeding tier's queue, when it is a video tier
        self.pending_vq: GopViewerQueue[BusFrame] | None = None
        self.acking = False
        self.window_blocked = False
        self.last_ack_us: int | None = None
        self.blocked_since_us: int | None = None  # legacy viewer: socket over budget with a frame waiting
        self.send_started_us: int | None = None
        self.last_sent_capture_us = -1
        self.frames_sent = 0
        self.bytes_sent = 0
        self.client_id = ""
        self.closed = False
        self.close_code: int | None = None
        self.expires_at: float | None = None  # wall-clock seconds when the viewer's token expires
        self.sender: asyncio.Task[None] | None = None
        self._next_adapt_us = 0
        self._live: bool | None = None
        self.on_close: Callable[[ViewerSession], None] | None = None
        # tier pins of one address are capped (edge/quota.py): the app sets the quota and the viewer's address
        self.pin_quota: PinQuota | None = None
        self.address = ""
        self.pinned: str | None = None
        if hello is not None:
            self.apply_hello(hello)

    # --- lifecycle -------------------------------------------------------
    def start(self, first: BusFrame | None = None) -> None:
        """Join the readers; `first` (the stream's freshest frame of any tier) goes out at once."""
        self.hub.watch(self)
        if self.feed_tier in self.video_names:
            self.vq = self._join_video(self.feed_tier)
            self._video_window(True)
            if first is not None and not self.vq.queued_frames:
                # no keyframe cached yet (the tier was not being encoded): a JPEG still until it comes
                self.queue.append(first)
            self.sender = asyncio.create_task(self._send_loop(), name=f"viewer-{self.stream}")
            return
        latest = self.hub.subscribe(self.stream, self.feed_tier, self)
        if latest is not None and (first is None or latest.capture_us >= first.capture_us):
            self.offer(self.feed_tier, latest)
        elif first is not None:
            self.queue.append(first)  # another tier's frame: a picture now beats the best tier later
        self.sender = asyncio.create_task(self._send_loop(), name=f"viewer-{self.stream}")

    async def finish(self) -> None:
        """Stop the sender and leave the readers (the WebSocket is already closed or lost)."""
        self.closed = True
        self.wake.set()
        self._pin(None)
        self.hub.unwatch(self)
        self.hub.unsubscribe(self.stream, self.feed_tier, self)
        if self.pending_tier is not None:
            self.hub.unsubscribe(self.stream, self.pending_tier, self)
        self.queue.clear()
        self.vq = self.pending_vq = None
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.sender

    async def close(self, code: int, reason: str = "") -> None:
        """Close with `code` (once); a viewer that cannot take the close frame is aborted."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.metrics.closes.labels(str(code)).inc()
        self.wake.set()
        reason = close_reason(reason or C.CLOSE_REASONS.get(code, ""))
        try:
            async with asyncio.timeout(1.0):
                if code != C.CLOSE_VIEWER_TIMEOUT:  # a viewer that stopped reading cannot take it anyway
                    await self.ws.send_text(encode_control(ErrorMessage(code, reason)))
                await self.ws.close(code, reason)
        except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect):
            self.abort()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._abort_if_stuck)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _abort_if_stuck(self) -> None:
        lost = getattr(self.protocol, "disconnected", None)
        if lost is False or (lost is None and self.transport is not None
                             and (not self.transport.is_closing() or self.transport.get_write_buffer_size())):
            self.abort()

    # --- from the bus reader (must never block) ---------------------------
    def offer(self, tier: str, frame: BusFrame) -> None:
        if self.closed:
            return
        if tier != self.feed_tier:
            if tier != self.pending_tier:
                return
            if self.pending_vq is not None:
                self._gop(self.pending_vq.offer(frame, frame.frame_id, frame.keyframe, frame.nbytes, mono_us()), tier)
                if self.pending_vq.started:  # the new tier has a keyframe queued: switch now
                    self._complete_switch()
                    self.wake.set()
                return
            self._complete_switch()
        if self.vq is not None:
            d = self.vq.offer(frame, frame.frame_id, frame.keyframe, frame.nbytes, mono_us())
            self._gop(d, tier)
            if d.queued:
                self.queue.clear()  # a JPEG still shown while joining is superseded by the video
                self.wake.set()
            return
        q = self.queue
        if q:  # one slot: the sender only ever sends the newest frame, an older one queued is superseded
            q.popleft()
            self.counters.drop_queue_full.inc()
            _drop_log.event("queue_full")
        q.append(frame)
        self.wake.set()

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
        if vq.queued_frames:
            self.wake.set()
        return vq

    def _gop(self, d: GopDecision, tier: str) -> None:
        if d.dropped and d.drop_reason is not None:
            self.counters.drop(d.drop_reason).inc(d.dropped)
        if d.request_keyframe:
            self.hub.request_keyframe(self.stream, tier)
        # (with a switch pending, or the old tier's frames still draining, the policy has moved already: falling
        # behind then is no news about the new tier)
        if (d.reason == "fell-behind" and tier == self.feed_tier and self.pending_tier is None
                and self.judge_from_id is None and self.settings.adapt):
            decision = self.policy.fell_behind(mono_us())
            if decision is not None:
                self._switch_to(decision.tier, decision.reason)

    def _video_window(self, video: bool) -> None:
        # no frame of a video tier may be skipped: allow a longer pipe (frames are small; bytes stay gated)
        self.window.max_frames = max(self.settings.max_inflight_frames, 16) if video \
            else self.settings.max_inflight_frames
        self.window.window = min(self.window.window, float(self.window.max_frames))

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
                if decision is not None and self.sender is None:
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
            self.metrics.acks.inc()
            self.on_ack(msg.frame_id)
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

    def on_ack(self, frame_id: int) -> None:
        now = mono_us()
        if not self.acking:
            self.acking = True  # from now on frames are tracked in the window
            self.last_ack_us = now
            return
        result = self.window.on_ack(frame_id, now)
        if result is None:
            return
        self.last_ack_us = now
        if self.judge_from_id is not None and 0 <= self.judge_from_id <= frame_id:
            self.judge_from_id = None  # the new tier's first frame is through: measure it from here
            self.delivered.reset(now)
        self.delivered.add(now, result.acked_bytes, result.acked_frames)
        g2g = wall_us() - result.capture_us
        if g2g >= 0:
            self.metrics.glass_to_glass.observe(g2g / 1e6)
        self.metrics.frame_delay.observe(result.delay_us / 1e6)
        if self.window_blocked:  # only a sender waiting for the window needs the ack
            self.wake.set()
        self._maybe_adapt(now)

    # --- stream state and timeouts (from the hub's housekeeping) ----------
    def on_stream_state(self, live: bool, detail: str) -> None:
        if live == self._live:
            return
        self._live = live
        self.send_control(encode_control(Status("live" if live else "stalled", detail)))

    def send_control(self, text: str) -> None:
        if not self.closed:
            self.controls.append(text)
            self.wake.set()

    def check(self, now_mono: float) -> None:
        """Close viewers that stopped acking or reading for `ack_timeout_s` (4008)."""
        if self.closed:
            return
        if self.expires_at is not None and time.time() > self.expires_at:
            self._close_soon(C.CLOSE_AUTH_FAILED, "authentication failed: token expired")
            return
        now = mono_us()
        timeout = int(self.settings.ack_timeout_s * 1e6)
        stuck_since: int | None = None
        if self.send_started_us is not None:
            stuck_since = self.send_started_us  # blocked in a write: the transport is over its high-water mark
        if self.acking and self.window.inflight:
            oldest = self.window.oldest_unacked_us() or now
            since = max(oldest, self.last_ack_us or oldest)
            stuck_since = since if stuck_since is None else min(stuck_since, since)
        elif not self.acking and self.blocked_since_us is not None:
            stuck_since = self.blocked_since_us if stuck_since is None else min(stuck_since, self.blocked_since_us)
        for vq, tier in ((self.vq, self.feed_tier), (self.pending_vq, self.pending_tier)):
            if vq is not None and tier is not None and vq.poll(now):
                self.hub.request_keyframe(self.stream, tier)  # still waiting for a keyframe: ask again
        if stuck_since is not None and now - stuck_since > timeout:
            what = "acks" if self.acking else "reads"
            self._close_soon(C.CLOSE_VIEWER_TIMEOUT, f"viewer timed out: no {what} for "
                             f"{self.settings.ack_timeout_s:g}s")
        else:
            self._maybe_adapt(now)

    def _close_soon(self, code: int, reason: str) -> None:
        task = asyncio.create_task(self.close(code, reason))
        _background.add(task)
        task.add_done_callback(_background.discard)

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
        if latest is not None and latest.capture_us > self.last_sent_capture_us:  # ... with a newer frame
            self.offer(name, latest)

    def _complete_switch(self) -> None:
        old, new = self.feed_tier, self.pending_tier
        assert new is not None
        self.feed_tier, self.pending_tier = new, None
        self.hub.unsubscribe(self.stream, old, self)
        if self.queue:
            self.counters.drop("tier_switch").inc(len(self.queue))
            self.queue.clear()
        if self.vq is not None and self.vq.queued_frames:
            self.counters.drop("tier_switch").inc(self.vq.queued_frames)
        self.vq, self.pending_vq = self.pending_vq, None
        self._video_window(self.vq is not None)
        self.delivered.reset(mono_us())
        self.judge_from_id = -1 if self.acking else None
        self.judge_deadline_us = mono_us() + _JUDGE_WAIT_MAX_US
        self.send_control(encode_control(TierChanged(new, getattr(self, "_switch_reason", ""))))

    def _maybe_adapt(self, now: int) -> None:
        if not self.settings.adapt or now < self._next_adapt_us or len(self.tiers) < 2:
            return
        self._next_adapt_us = now + _ADAPT_EVERY_US
        if self.judge_from_id is not None and now > self.judge_deadline_us:
            self.judge_from_id = None
            self.delivered.reset(now)
        if self.pending_tier is not None or self.judge_from_id is not None:
            # the old tier still feeds until the new one has a frame (a keyframe), and its frames in flight
            # drain before the new tier's: judge the new tier once its first frame is acked
            return
        if self.vq is not None and self.vq.waiting_for_keyframe:
            self.delivered.reset(now)  # waiting for a keyframe is not a slow link: measure from the resync
            return
        wall = wall_us()
        reader = self.hub.reader(self.stream, self.feed_tier)
        source_fps = reader.fps(wall) if reader is not None and reader.frames >= 10 else self.source_fps
        target = min(source_fps, self.cap.max_fps) if self.cap.max_fps > 0 else source_fps
        need = self._frame_sizes()
        decision = self.policy.update(now, delivered_fps=self.delivered.rate(now), target_fps=target,
                                      acked_bytes_per_s=self.delivered.bytes_per_s(now),
                                      need_bytes_per_frame=need, measure_span_us=self.delivered.span_us(now))
        if decision is not None:
            self._switch_to(decision.tier, decision.reason)

    def _frame_sizes(self) -> list[float | None]:
        """Mean frame size per tier: measured where a reader runs, else a video tier's bitrate over the source
        rate, else scaled by area from a measured tier of the same codec family."""
        sizes: list[float | None] = []
        for tier in self.tiers:
            r = self.hub.reader(self.stream, tier.name)
            if r is not None and r.mean_bytes is not None:
                sizes.append(r.mean_bytes)
            elif tier.bitrate and self.source_fps > 0:
                sizes.append(tier.bitrate / 8 / self.source_fps)
            else:
                sizes.append(None)
        for i, size in enumerate(sizes):
            tier = self.tiers[i]
            if size is not None or not tier.width or not tier.height:
                continue
            # scale from a measured tier of the same codec family (H.264 frames are far smaller than JPEG)
            same = [(j, s) for j, s in enumerate(sizes) if s is not None and is_video(self.tiers[j]) == is_video(tier)]
            if same:
                j, s = same[0]
                sizes[i] = s * tier.width * tier.height / max(1, self.tiers[j].width * self.tiers[j].height)
        return sizes

    # --- the sender ------------------------------------------------------
    async def _wait(self, delay: float | None) -> None:
        """Sleep until woken (frame, ack, control, close) or for at most `delay` seconds."""
        self.wake.clear()
        if delay is None:
            await self.wake.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    async def _send_loop(self) -> None:
        metrics, window = self.metrics, self.window
        # uvicorn's own ASGI send, past Starlette's per-message state checks and wrappers (same ASGI events)
        raw_send = getattr(self.protocol, "send", None)
        if not callable(raw_send):
            raw_send = self.ws.send
        unsent_budget, legacy_budget = self.settings.unsent_budget_bytes, self.settings.legacy_budget_bytes
        poll = _LEGACY_POLL_S[0]
        try:
            while not self.closed:
                if self.controls:
                    await raw_send({"type": "websocket.send", "text": self.controls.popleft()})
                    continue
                vq = self.vq
                if not (self.queue or (vq is not None and vq.queued_frames)):
                    await self._wait(None)
                    continue
                now = mono_us()
                wait = self.cap.wait_us(now) if vq is None else 0  # a video tier cannot skip frames for a cap
                if wait:
                    await self._wait(wait / 1e6)
                    continue
                if self.acking and not window.can_send():
                    self.window_blocked = True
                    await self._wait(0.25)  # an ack wakes us; the timeout re-checks the rest
                    self.window_blocked = False
                    continue
                unsent = self.probe.unsent()
                if unsent > (unsent_budget if self.acking else legacy_budget):
                    if self.blocked_since_us is None:
                        self.blocked_since_us = now
                    await asyncio.sleep(poll)  # the kernel gives no event for "unsent bytes fell"
                    poll = min(poll * 2, _LEGACY_POLL_S[1])
                    continue
                poll = _LEGACY_POLL_S[0]
                self.blocked_since_us = None
                if vq is not None and (vq.queued_frames or not self.queue):
                    popped = vq.pop()  # in order: every frame of the chain, from a keyframe on
                    if popped is None:
                        continue
                    frame = popped
                else:
                    frame = self.queue.pop()
                    if self.queue:
                        self.counters.drop_stale.inc(len(self.queue))
                        self.queue.clear()
                    if frame.capture_us <= self.last_sent_capture_us:
                        continue  # never the same moment twice, never back in time (joins, tier switches)
                self.send_started_us = now
                await raw_send({"type": "websocket.send", "bytes": frame.data})
                self.send_started_us = None
                self.last_sent_capture_us = frame.capture_us
                if self.judge_from_id == -1:
                    self.judge_from_id = frame.frame_id
                if self.acking:
                    metrics.inflight.observe(window.inflight_frames)
                    window.on_send(frame.frame_id, frame.nbytes, frame.capture_us, now)
                else:
                    self.delivered.add(now, frame.nbytes)
                self.cap.on_send(now)
                if self.frames_sent == 0:
                    metrics.first_frame.observe((mono_us() - self.started_us) / 1e6)
                self.frames_sent += 1
                self.bytes_sent += frame.nbytes
                self.counters.sent(self.feed_tier).inc()
                self.counters.bytes_sent.inc(frame.nbytes)
                if not self.acking:
                    self._maybe_adapt(now)
                if self.queue or self.controls or (self.vq is not None and self.vq.queued_frames):
                    await asyncio.sleep(0)  # yield between frames: a send loop that never waits starves accept()
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("viewer sender failed")
            self._close_soon(C.CLOSE_INTERNAL_ERROR, "internal error")
