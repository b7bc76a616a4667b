"""Fan-out of bus frames to viewer sessions: one reader per (stream, tier) per replica.

A `TierReader` follows one frames stream, frames each wire message once as a
WebSocket binary message and hands it to every subscribed viewer with a
non-blocking `offer`, in one pass: a viewer whose gates are open gets the very
same bytes object written to its socket at once, the others keep it as their
newest frame; it never awaits a viewer. A JPEG tier is read with
`framecast.bus.read_frames` (the newest entry of each batch: older JPEG frames
are stale); a video tier with `framecast.bus.read.read_video_frames`, every
entry in order from a keyframe, since a skipped P-frame breaks every viewer's
picture (dropping for a slow viewer is its GOP queue's job, never the reader's).
A reader starts with the first subscriber, keeps the newest frame (and for
video the last GOP) for instant first frames and snapshots, never starts from
or serves a frame older than the stall threshold, refreshes the demand key that
asks the inference service to publish its tier, and stops `reader_grace_s`
after its last subscriber left.

The hub's housekeeping loop (once a second) refreshes demand keys, watches
every watched stream's heartbeat (live/stalled status for viewers) and runs
the viewers' timeout checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis
import redis.asyncio as aioredis

from framecast.bus import REDIS_ERRORS, Backoff, Keys, StreamInfo, raise_if_cancelling, read_frames
from framecast.bus import now_us as wall_us
from framecast.bus.read import VideoEntry, read_video_frames
from framecast.bus.signals import AsyncKeyframeRequester
from framecast.constants import FRAME_FIELD
from framecast.edge.busframe import BusFrame
from framecast.edge.gop import GopCache
from framecast.edge.metrics import EdgeMetrics
from framecast.edge.pacing import RateMeter
from framecast.logs import RateLimitedLog
from framecast.protocol import ProtocolError, decode_header

log = logging.getLogger("framecast.edge.fanout")
CLOSE_WAIT_S = 2.0  # how long close() waits for the cancelled readers
_MAX_CACHED_STREAMS = 1024
RECENTLY_SERVED_S = 60.0  # a stream watched here this recently is not "unknown" while its meta is missing


class Subscriber(Protocol):
    def offer(self, tier: str, frame: BusFrame) -> None: ...

    def on_gap(self, tier: str) -> None:
        """Frames of a video tier were missed (the bus reader reconnected): its chain is broken."""


class StreamWatcher(Protocol):
    stream: str

    def on_stream_state(self, live: bool, detail: str) -> None: ...

    def check(self, now_mono: float) -> None: ...


async def _video_pairs(entries: AsyncIterator[VideoEntry]) -> AsyncIterator[tuple[bytes, bool]]:
    async for entry in entries:
        yield entry.message, entry.gap


async def _jpeg_pairs(messages: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes, bool]]:
    async for message in messages:
        yield message, False


@dataclass
class TierReader:
    stream: str
    tier: str
    key: str
    subscribers: set[Subscriber] = field(default_factory=set)
    latest: BusFrame | None = None
    task: asyncio.Task[None] | None = None
    idle_since: float | None = None  # monotonic time the last subscriber left
    arrivals: RateMeter = field(default_factory=RateMeter)
    mean_bytes: float | None = None
    frames: int = 0
    started_us: int = field(default_factory=wall_us)
    gop: GopCache[BusFrame] | None = None  # video tiers: the last keyframe and its followers, for joins
    demanded: bool = False  # this replica has set the tier's demand key and not released it
    keyframe_capture_us: int = 0  # video: capture time of the keyframe the GOP cache starts with

    def fps(self, now: int) -> float:
        return self.arrivals.rate(now)


class _FreshFrameWaiter:
    """A subscriber that waits for one frame captured within `max_age_us` (a snapshot of an idle tier)."""

    def __init__(self, max_age_us: int) -> None:
        self.max_age_us = max_age_us
        self.frame: asyncio.Future[BusFrame] = asyncio.get_running_loop().create_future()

    def offer(self, tier: str, frame: BusFrame) -> None:
        if not self.frame.done() and wall_us() - frame.capture_us <= self.max_age_us:
            self.frame.set_result(frame)

    def on_gap(self, tier: str) -> None:
        pass


class FanoutHub:
    """Owns the bus readers of this replica and the per-stream state viewers share."""

    def __init__(self, client: aioredis.Redis, reader_client: aioredis.Redis, keys: Keys, metrics: EdgeMetrics,
                 *, edge_id: str, block_ms: int = 1000, reader_grace_s: float = 5.0, demand_ttl_s: int = 5,
                 stall_after_s: float = 2.0, info_cache_s: float = 1.0) -> None:
        self.client, self.reader_client, self.keys, self.metrics = client, reader_client, keys, metrics
        self.edge_id = edge_id
        self.block_ms, self.reader_grace_s, self.demand_ttl_s = block_ms, reader_grace_s, demand_ttl_s
        self.stall_after_us = int(stall_after_s * 1e6)
        self.info_cache_s = info_cache_s
        self.readers: dict[tuple[str, str], TierReader] = {}
        self.watchers: dict[str, set[StreamWatcher]] = {}
        self.live: dict[str, bool] = {}
        self._info: dict[str, tuple[float, StreamInfo | None]] = {}
        self._newest: dict[str, tuple[float, BusFrame | None]] = {}
        self._served: dict[str, float] = {}  # stream -> monotonic time its last viewer here left
        self._housekeeping: asyncio.Task[None] | None = None
        self._bad_frames = RateLimitedLog(log, "bad frames on the bus")
        self._bus_errors = RateLimitedLog(log, "bus read errors")
        self.on_tick: list[Callable[[], None]] = []
        self.keyframes = AsyncKeyframeRequester(client, keys, edge_id=edge_id)
        self._background: set[asyncio.Task[None]] = set()
        self._release_demand_ok = True

    # --- lifecycle -------------------------------------------------------
    def start(self) -> None:
        self._housekeeping = asyncio.create_task(self._housekeep(), name="edge-housekeeping")

    async def close(self) -> None:
        tasks = [r.task for r in self.readers.values() if r.task is not None]
        if self._housekeeping is not None:
            tasks.append(self._housekeeping)
        for t in tasks:
            t.cancel()
        if tasks:
            # bounded: on Python 3.11 redis-py's wait_for can swallow a cancellation, and a stop must never hang
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
            if stuck:
                log.warning("%d bus reader task(s) did not stop within %.0fs of their cancellation: left behind",
                            len(stuck), CLOSE_WAIT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.keyframes.drain(), 1.0)
        self.readers.clear()
        self.metrics.bus_readers.set(0)

    # --- stream metadata -------------------------------------------------
    async def stream_info(self, stream: str, *, fresh: bool = False) -> StreamInfo | None:
        """The stream's meta (None: unknown stream); cached briefly so a join storm costs one GET."""
        now = time.monotonic()
        cached = self._info.get(stream)
        if cached is not None and not fresh and now - cached[0] < self.info_cache_s:
            return cached[1]
        raw = await self.client.get(self.keys.meta(stream))
        info: StreamInfo | None = None
        if raw is not None:
            try:
                info = StreamInfo.from_json(raw)
            except (ValueError, KeyError, TypeError):
                log.warning("stream %s has unreadable meta", stream)
        if info is None and cached is not None and cached[1] is not None and self.recently_served(stream, now):
            # meta expired while viewers watch (source stalled), or Redis restarted empty and the source has
            # not announced the stream again yet: keep the last ladder, viewers are told "stalled"
            info = cached[1]
        if len(self._info) >= _MAX_CACHED_STREAMS:  # names come from URLs: never let them grow the cache
            self._info = {s: v for s, v in self._info.items() if self.recently_served(s, now)}
        self._info[stream] = (now, info)
        return info

    def recently_served(self, stream: str, now_mono: float) -> bool:
        """Watched here now, or within the last `RECENTLY_SERVED_S` seconds."""
        left = self._served.get(stream)
        return stream in self.watchers or (left is not None and now_mono - left <= RECENTLY_SERVED_S)

    def cached_info(self, stream: str) -> StreamInfo | None:
        cached = self._info.get(stream)
        return cached[1] if cached else None

    # --- subscriptions ---------------------------------------------------
    def subscribe(self, stream: str, tier: str, sub: Subscriber, *, video: bool = False) -> BusFrame | None:
        """Feed `sub` from the (stream, tier) reader, starting it if needed; returns its newest frame."""
        reader = self.readers.get((stream, tier))
        if reader is None:
            reader = TierReader(stream, tier, self.keys.frames(stream, tier))
            self.readers[(stream, tier)] = reader
            self.metrics.tier_seen(stream, tier)
        if video and reader.gop is None:
            reader.gop = GopCache()
        if reader.latest is not None and wall_us() - reader.latest.capture_us > self.stall_after_us:
            reader.latest = None  # the tier was not encoded for a while: its last frames are no start point
            if reader.gop is not None:
                reader.gop.clear()
        reader.subscribers.add(sub)
        reader.idle_since = None
        if reader.task is None or reader.task.done():
            reader.started_us = wall_us()
            reader.task = asyncio.create_task(self._run_reader(reader), name=f"reader-{stream}-{tier}")
            self.metrics.bus_readers.set(sum(1 for r in self.readers.values() if r.task is not None))
        elif not reader.demanded:  # a reader in its grace period whose demand was released: ask again now
            task = asyncio.create_task(self._demand_now(reader))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return reader.latest

    def unsubscribe(self, stream: str, tier: str, sub: Subscriber) -> None:
        reader = self.readers.get((stream, tier))
        if reader is None:
            return
        reader.subscribers.discard(sub)
        if not reader.subscribers:
            reader.idle_since = time.monotonic()

    def latest(self, stream: str, tier: str) -> BusFrame | None:
        reader = self.readers.get((stream, tier))
        return reader.latest if reader else None

    async def freshest(self, stream: str, tiers: list[str], *, fresh_us: int = 1_000_000) -> BusFrame | None:
        """The newest frame of any tier, for a joining viewer's instant first frame.

        The inference service encodes only demanded tiers (and the lightest one
        at a low idle rate otherwise), so the tier a viewer starts on may have no
        recent frame yet. Readers' cached frames answer without Redis; otherwise
        one pipelined XREVRANGE per tier, shared by viewers joining together.
        """
        now = wall_us()
        cached = [r.latest for t in tiers if (r := self.readers.get((stream, t))) and r.latest is not None]
        best = max(cached, key=lambda f: f.capture_us, default=None)
        if best is not None and now - best.capture_us <= fresh_us:
            return best
        hit = self._newest.get(stream)
        if hit is not None and time.monotonic() - hit[0] < 0.1:
            return hit[1]
        pipe = self.client.pipeline(transaction=False)
        for t in tiers:
            pipe.xrevrange(self.keys.frames(stream, t), "+", "-", count=1)
        for entries in await pipe.execute():
            if not entries:
                continue
            data = entries[0][1].get(FRAME_FIELD)
            try:
                header = decode_header(data) if data else None
            except ProtocolError:
                header = None
            if header is not None and now - header.capture_us <= self.stall_after_us \
                    and (best is None or header.capture_us > best.capture_us):
                best = BusFrame(data, header.frame_id, header.capture_us, header.tier, now)
        if len(self._newest) >= _MAX_CACHED_STREAMS:
            self._newest.clear()
        self._newest[stream] = (time.monotonic(), best)
        return best

    async def snapshot_frame(self, stream: str, tiers: list[str], *, wait_s: float,
                             cached_only: bool = False) -> tuple[str, BusFrame] | None:
        """(tier, frame): a frame of the first of `tiers` (best first) captured within the stall threshold.

        Readers' cached frames first, then one pipelined XREVRANGE for the other
        tiers. When no tier has a fresh frame (the inference service encodes only
        demanded tiers), the first tier is demanded like a viewer's (its reader
        starts, and stays `reader_grace_s` to answer later snapshots from its
        cache) and its first fresh frame awaited for at most `wait_s`.
        `cached_only`: answer from this replica's readers alone (no Redis, no demand).
        """
        now = wall_us()
        found: dict[str, BusFrame] = {}
        for t in tiers:
            r = self.readers.get((stream, t))
            if r is not None and r.latest is not None and now - r.latest.capture_us <= self.stall_after_us:
                found[t] = r.latest
        if cached_only or tiers[0] in found:
            best = next((t for t in tiers if t in found), None)
            return (best, found[best]) if best is not None else None
        missing = [t for t in tiers if t not in found]
        pipe = self.client.pipeline(transaction=False)
        for t in missing:
            pipe.xrevrange(self.keys.frames(stream, t), "+", "-", count=1)
        for t, entries in zip(missing, await pipe.execute(), strict=True):
            data = entries[0][1].get(FRAME_FIELD) if entries else None
            try:
                header = decode_header(data) if data else None
            except ProtocolError:
                header = None
            if data and header is not None and now - header.capture_us <= self.stall_after_us:
                found[t] = BusFrame(data, header.frame_id, header.capture_us, header.tier, now)
        best = next((t for t in tiers if t in found), None)
        if best is not None:
            return best, found[best]
        if wait_s <= 0:
            return None
        waiter = _FreshFrameWaiter(self.stall_after_us)
        self.subscribe(stream, tiers[0], waiter)
        try:
            return tiers[0], await asyncio.wait_for(waiter.frame, wait_s)
        except TimeoutError:
            return None
        finally:
            self.unsubscribe(stream, tiers[0], waiter)

    def request_keyframe(self, stream: str, tier: str) -> None:
        """Ask the encoder for an IDR on a video tier (rate-limited per replica, never awaits)."""
        if self.keyframes.request_nowait(stream, tier):
            self.metrics.keyframe_requests.inc()

    def reader(self, stream: str, tier: str) -> TierReader | None:
        return self.readers.get((stream, tier))

    def watch(self, watcher: StreamWatcher) -> None:
        self.watchers.setdefault(watcher.stream, set()).add(watcher)

    def unwatch(self, watcher: StreamWatcher) -> None:
        group = self.watchers.get(watcher.stream)
        if group is not None:
            group.discard(watcher)
            if not group:
                del self.watchers[watcher.stream]
                self.live.pop(watcher.stream, None)
                now = time.monotonic()
                if len(self._served) >= _MAX_CACHED_STREAMS:
                    self._served = {s: t for s, t in self._served.items() if now - t <= RECENTLY_SERVED_S}
                self._served[watcher.stream] = now

    # --- the reader ------------------------------------------------------
    async def _run_reader(self, reader: TierReader) -> None:
        from framecast.edge.session import offer_all  # the fan-out pass, compiled with the sessions (no cycle here)

        metrics = self.metrics
        with contextlib.suppress(*REDIS_ERRORS):
            await self._set_demand([reader])  # ask inference for this tier before the first XREAD
        lag = metrics.reader_lag
        live = self.live

        def on_error(exc: BaseException) -> None:
            metrics.bus_reconnects.inc()
            self._bus_errors.event(type(exc).__name__)

        try:
            async for data, gap in self._entries(reader, on_error):
                try:
                    header = decode_header(data)
                except ProtocolError as exc:
                    self._bad_frames.event(str(exc)[:60])
                    continue
                now = wall_us()
                frame = BusFrame(data, header.frame_id, header.capture_us, header.tier, now, header.keyframe)
                reader.latest = frame
                if reader.gop is not None:
                    if gap and not header.keyframe:  # entries before this one were missed: the chain is broken
                        reader.gop.break_chain()
                        for sub in tuple(reader.subscribers):
                            sub.on_gap(reader.tier)
                    if header.keyframe:
                        reader.keyframe_capture_us = header.capture_us
                    elif now - reader.keyframe_capture_us > self.stall_after_us and len(reader.gop):
                        reader.gop.clear()  # a long GOP: its keyframe is too old to start a joiner (IDR instead)
                    reader.gop.add(frame, header.frame_id, header.keyframe, len(data), now)
                reader.frames += 1
                reader.arrivals.add(now, len(data))
                size = float(len(data))
                reader.mean_bytes = size if reader.mean_bytes is None else reader.mean_bytes * 0.9 + size * 0.1
                lag.observe(max(0, now - header.capture_us) / 1e6)
                if live.get(reader.stream) is False and now - header.capture_us < self.stall_after_us:
                    self.set_live(reader.stream, True)  # frames are back: say so at once, not at the next tick
                offer_all(reader.subscribers, reader.tier, frame)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill fan-out silently
            log.exception("bus reader %s/%s failed", reader.stream, reader.tier)

    def _entries(self, reader: TierReader, on_error: Callable[[BaseException], None]
                 ) -> AsyncIterator[tuple[bytes, bool]]:
        """(wire message, gap) pairs of a tier: every entry in order for a video tier, the newest for JPEG.

        A P-frame only decodes on top of the one before it, so a video tier's
        reader never skips an entry (dropping for a slow viewer is its GOP
        queue's job); a JPEG reader that lags jumps to the newest entry. Either
        starts only from frames captured within the stall threshold.
        """
        # back-off capped at 1 s: viewers resume within about a second of Redis returning
        backoff = Backoff(base=0.05, cap=1.0)
        if reader.gop is not None:
            return _video_pairs(read_video_frames(self.reader_client, reader.key, block_ms=self.block_ms,
                                                  backoff=backoff, on_error=on_error,
                                                  max_age_us=self.stall_after_us))
        return _jpeg_pairs(read_frames(self.reader_client, reader.key, block_ms=self.block_ms, on_error=on_error,
                                       backoff=backoff, max_age_us=self.stall_after_us))

    # --- housekeeping ----------------------------------------------------
    async def _set_demand(self, readers: list[TierReader]) -> None:
        if not readers:
            return
        pipe = self.client.pipeline(transaction=False)
        for r in readers:
            pipe.set(self.keys.demand(r.stream, r.tier), self.edge_id, ex=self.demand_ttl_s)
            r.demanded = True
        await pipe.execute()

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            # a cancellation that a Redis call swallowed in the last tick (Python 3.11's wait_for, around every
            # redis-py write, loses one that lands as the write completes) still counts: without this check the
            # loop ran on, and a stop awaiting it could hang (the likely cause of a 2-worker edge that did not
            # exit after SIGTERM in a CI run, before close() bounded that wait)
            raise_if_cancelling()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                self._bus_errors.event(type(exc).__name__)
            except Exception:
                log.exception("edge housekeeping failed")

    async def tick(self) -> None:
        now_mono = time.monotonic()
        for group in list(self.watchers.values()):
            for w in list(group):
                w.check(now_mono)
        for cb in self.on_tick:
            cb()
        # stop readers nobody needed for the grace period
        for key, reader in list(self.readers.items()):
            if not reader.subscribers and reader.idle_since is not None \
                    and now_mono - reader.idle_since >= self.reader_grace_s:
                if reader.task is not None:
                    reader.task.cancel()
                del self.readers[key]
        self.metrics.bus_readers.set(sum(1 for r in self.readers.values() if r.task is not None))
        await self._set_demand([r for r in self.readers.values() if r.subscribers])
        await self._release_demand([r for r in self.readers.values() if not r.subscribers and r.demanded])
        await self._check_heartbeats()

    async def _demand_now(self, reader: TierReader) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self._set_demand([reader])

    async def _release_demand(self, readers: list[TierReader]) -> None:
        """Tell the inference service at once that this replica no longer needs a tier.

        The demand key expires by itself; deleting it (when no other replica
        refreshed it since) saves the encoder up to `demand_ttl_s` of work on a
        tier nobody watches, e.g. after a failed probe up. The reader keeps its
        grace period: a viewer coming back re-demands the tier.
        """
        for r in readers:
            r.demanded = False
            if not self._release_demand_ok:
                continue
            key = self.keys.demand(r.stream, r.tier)
            try:
                if await self.client.get(key) == self.edge_id.encode() and not r.subscribers:  # nobody came back
                    await self.client.delete(key)
            except redis.exceptions.NoPermissionError:
                # an ACL without GET/DEL on demand keys: they then simply expire after demand_ttl_s
                self._release_demand_ok = False
                log.info("the Redis user may not GET/DEL demand keys: demand expires instead of being released")
            except REDIS_ERRORS as exc:
                self._bus_errors.event(type(exc).__name__)

    async def _check_heartbeats(self) -> None:
        streams = list(self.watchers)
        if not streams:
            return
        pipe = self.client.pipeline(transaction=False)  # key by key: streams' heartbeats span cluster slots
        for s in streams:
            pipe.get(self.keys.heartbeat(s))
        values = await pipe.execute()
        now = wall_us()
        for stream, raw in zip(streams, values, strict=True):
            beat = int(raw) if raw is not None and raw.isdigit() else None
            if beat is None or now - beat > self.stall_after_us:
                self.set_live(stream, False, "no heartbeat from the source" if beat is None else
                              f"no heartbeat for {(now - beat) / 1e6:.1f}s")
                continue
            # the source process is alive; are its frames flowing? (a source can stall behind a live heartbeat)
            age = self._frame_age_us(stream, now)
            info = self.cached_info(stream)
            limit = max(self.stall_after_us, int(3e6 / info.fps) if info is not None and info.fps > 0 else 0)
            if age is not None and age > limit:
                self.set_live(stream, False, f"no frame for {age / 1e6:.1f}s")
            else:
                self.set_live(stream, True)

    def _frame_age_us(self, stream: str, now: int) -> int | None:
        """Time since the newest frame read for any watched tier of `stream` (None: no reader yet)."""
        newest: int | None = None
        for (s, _), r in self.readers.items():
            if s == stream and r.subscribers:
                last = r.latest.read_us if r.latest is not None and r.latest.read_us >= r.started_us \
                    else r.started_us
                newest = last if newest is None else max(newest, last)
        return None if newest is None else now - newest

    def set_live(self, stream: str, live: bool, detail: str = "") -> None:
        before = self.live.get(stream)
        self.live[stream] = live
        if before is None or before != live:
            for w in list(self.watchers.get(stream, ())):
                w.on_stream_state(live, detail)
