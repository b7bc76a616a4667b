"""The frame pipeline: capture -> model -> encode (tiers in parallel) -> publish, one thread per stage.

Stages hand frames over through one-item slots where the newest frame wins:
a stage that is still busy never builds a queue behind it (which would only
add latency); the frame it did not take is dropped and counted under the name
of the stage it never reached. A control thread reads demand and refreshes the
stream's meta and heartbeat, so no demand look-up ever sits on the frame path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from framecast.bus import Backoff
from framecast.inference import metrics as M
from framecast.inference.encode import TierEncoder
from framecast.inference.publish import DemandPolicy, DemandWatcher, EncodedFrame, FramePublisher, carry_video
from framecast.inference.sources import Pacer, Source, SourceEnded, SourceLost
from framecast.logs import RateLimitedLog

log = logging.getLogger("framecast.inference.pipeline")

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A one-item hand-off between two threads; `put` never blocks and returns the item it displaced."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None

    def put(self, item: T) -> T | None:
        with self._cond:
            displaced, self._item = self._item, item
            self._cond.notify()
        return displaced

    def put_if_newer(self, item: T, newer: Callable[[T, T], bool],
                     merge: Callable[[T, T], T | None] | None = None) -> tuple[bool, T | None]:
        """Put `item` unless the slot holds a newer one: (stored, the item that did not stay).

        `merge(displaced, item)`, called under the lock before `item` can be taken, may move parts of the
        displaced item into `item`; it returns what is still lost (None: nothing).
        """
        with self._cond:
            if self._item is not None and not newer(item, self._item):
                return False, item
            displaced, self._item = self._item, item
            if displaced is not None and merge is not None:
                displaced = merge(displaced, item)
            self._cond.notify()
        return True, displaced

    def get(self, timeout: float) -> T | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
        return item

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


@dataclass(slots=True)
class PipelineFrame:
    frame_id: int
    capture_us: int
    image: np.ndarray
    tiers: list[int] = field(default_factory=list)


Model = Callable[[np.ndarray], np.ndarray]


class Pipeline:
    """Owns the stage threads; `stop` (an Event) ends them all."""

    def __init__(self, source: Source, model: Model, encoder: TierEncoder, policy: DemandPolicy,
                 publisher: FramePublisher, watcher: DemandWatcher, *, first_frame_id: int,
                 stop: threading.Event | None = None, stall_after: float | None = None,
                 encode_workers: int = 1) -> None:
        self.source, self.model, self.encoder, self.policy = source, model, encoder, policy
        self.publisher, self.watcher = publisher, watcher
        self.next_frame_id = first_frame_id
        self.stop = stop or threading.Event()
        self.ended = False  # a file source without --loop reached its end
        self.last_progress = time.monotonic()  # when a frame last got through the model (or was skipped by demand)
        self.stall_after = stall_after if stall_after is not None else max(2.0, 3.0 / source.fps)
        self._to_model: LatestSlot[PipelineFrame] = LatestSlot()
        self._to_encode: LatestSlot[PipelineFrame] = LatestSlot()
        self._to_publish: LatestSlot[EncodedFrame] = LatestSlot()
        # frames encoded at once: with more than one, a frame's tiers overlap the next frame's in the pool
        self.encode_workers = max(1, encode_workers)
        self._threads: list[threading.Thread] = []
        self._done_id = first_frame_id - 1
        self._done_lock = threading.Lock()
        self._source_errors = RateLimitedLog(log, "source failures", interval=5.0)
        self._stage_errors = RateLimitedLog(log, "frames failed in a stage", interval=5.0)

    def start(self) -> None:
        stages = [("capture", self._capture_loop), ("inference", self._inference_loop)]
        stages += [(f"encode-{i}" if i else "encode", self._encode_loop) for i in range(self.encode_workers)]
        stages += [("publish", self._publish_loop), ("control", self._control_loop)]
        for name, target in stages:
            thread = threading.Thread(target=self._guard(name, target), name=f"framecast-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _guard(self, name: str, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self.stop.is_set():
                try:
                    target()
                    return
                except Exception:  # never let a stage die: log, pause, go on
                    log.exception("%s stage failed unexpectedly; restarting it", name)
                    self.stop.wait(0.5)
        return run

    def _finished(self, frame_id: int) -> None:
        """A frame left the pipeline for good (published, failed, or skipped)."""
        with self._done_lock:
            self._done_id = max(self._done_id, frame_id)

    def _drain(self, last_id: int, timeout: float) -> None:
        """Wait until frame `last_id` left the pipeline (frames displaced before it never will)."""
        deadline = time.monotonic() + timeout
        while self._done_id < last_id and time.monotonic() < deadline and not self.stop.wait(0.01):
            pass

    def alive(self) -> bool:
        """Frames are flowing: one got through the model stage within `stall_after` seconds."""
        return time.monotonic() - self.last_progress <= self.stall_after

    def join(self, timeout: float) -> bool:
        """Wait for the stages to finish (after `stop` is set); False if some did not in time."""
        for slot in (self._to_model, self._to_encode, self._to_publish):
            slot.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # --- stages ------------------------------------------------------------

    def _capture_loop(self) -> None:
        pacer = Pacer(self.source.fps) if self.source.paced else None
        backoff = Backoff(base=0.5, cap=10.0)
        while not self.stop.is_set():
            if pacer is not None:
                wait = pacer.wait_time(time.monotonic())
                if wait > 0 and self.stop.wait(wait):
                    return
                pacer.mark(time.monotonic())
            start = time.perf_counter()
            try:
                captured = self.source.read(self.next_frame_id)
            except SourceEnded as exc:
                log.info("%s: publishing the frames in flight, then stopping", exc)
                self._drain(self.next_frame_id - 1, timeout=5.0)
                self.ended = True
                self.stop.set()
                return
            except SourceLost as exc:
                M.SOURCE_ERRORS.labels("read").inc()
                M.FRAMES.labels("capture", "error").inc()
                if backoff.attempt == 0:
                    log.warning("%s; reopening with back-off", exc)
                else:
                    self._source_errors.event(str(exc))
                self._reopen(backoff)
                continue
            backoff.reset()  # only a frame read proves the source is back (a reopen alone may fail again)
            M.STAGE_SECONDS.labels("capture").observe(time.perf_counter() - start)
            M.FRAMES.labels("capture", "ok").inc()
            frame = PipelineFrame(self.next_frame_id, captured.capture_us, captured.image)
            self.next_frame_id += 1
            if self._to_model.put(frame) is not None:
                M.drop("inference_busy", "inference")

    def _reopen(self, backoff: Backoff) -> None:
        while not self.stop.wait(backoff.next_delay()):
            try:
                self.source.reopen()
            except SourceLost as exc:
                M.SOURCE_ERRORS.labels("reopen").inc()
                self._source_errors.event(str(exc))
                continue
            log.info("source %s reopened", self.source.description)
            return

    def _inference_loop(self) -> None:
        while not self.stop.is_set():
            frame = self._to_model.get(0.1)
            if frame is None:
                continue
            # decide the tiers before the model runs: with nobody watching, skip the model as well
            now = time.monotonic()
            self.last_progress = now
            frame.tiers = self.policy.select(now)
            if not frame.tiers:
                M.drop("no_demand", "inference")
                self._finished(frame.frame_id)
                continue
            start = time.perf_counter()
            try:
                frame.image = self.model(frame.image)
            except Exception as exc:  # a plug-in model may fail on one frame: count it, keep going
                M.DROPPED.labels("inference_error").inc()
                M.FRAMES.labels("inference", "error").inc()
                self._stage_errors.event(f"inference {type(exc).__name__}: {exc}")
                self._finished(frame.frame_id)
                continue
            self.last_progress = time.monotonic()
            M.STAGE_SECONDS.labels("inference").observe(time.perf_counter() - start)
            M.FRAMES.labels("inference", "ok").inc()
            if self._to_encode.put(frame) is not None:
                M.drop("encode_busy", "encode")

    def _encode_loop(self) -> None:
        while not self.stop.is_set():
            frame = self._to_encode.get(0.1)
            if frame is None:
                continue
            start = time.perf_counter()
            try:
                tiers = self.encoder.encode(frame.image, frame.tiers)
            except Exception as exc:
                M.DROPPED.labels("encode_error").inc()
                M.FRAMES.labels("encode", "error").inc()
                self._stage_errors.event(f"encode {type(exc).__name__}: {exc}")
                self._finished(frame.frame_id)
                continue
            M.STAGE_SECONDS.labels("encode").observe(time.perf_counter() - start)
            M.FRAMES.labels("encode", "ok").inc()
            for t in tiers:
                M.ENCODE_SECONDS.labels(t.tier.name).observe(t.seconds)
                M.ENCODED_BYTES.labels(t.tier.name).observe(len(t.payload))
            # a displaced frame's video tiers ride along with the newer one (carry_video): its P-frame needs them
            stored, dropped = self._to_publish.put_if_newer(EncodedFrame(frame.frame_id, frame.capture_us, tiers),
                                                            lambda a, b: a.frame_id > b.frame_id, carry_video)
            if dropped is not None:
                # displaced while the publisher was busy, or (several encode workers) overtaken by a newer frame
                M.drop("publish_busy" if stored else "reordered", "publish")
                self.encoder.lost(dropped.tiers)  # a video frame never published breaks its tier's chain

    def _publish_loop(self) -> None:
        while not self.stop.is_set():
            frame = self._to_publish.get(0.1)
            if frame is not None:
                if not self.publisher.publish(frame):
                    self.encoder.lost(frame.tiers)
                self._finished(frame.frame_id)

    def _control_loop(self) -> None:
        while not self.stop.is_set():
            delay = self.watcher.tick()
            self.stop.wait(delay)
