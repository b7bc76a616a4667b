"""Encoding of one frame into every demanded tier (JPEG, or H.264 for video tiers), the tiers in parallel.

Video tiers keep state between frames (the reference chain), so each has one
`VideoTierEncoder` fed under its own lock, frames in order; a video tier that
was not encoded for the previous frame (demand just started) is asked for an
IDR first, and `lost()` asks for one when an encoded frame never reached Redis.

JPEG tiers go through one of the encoders of `framecast.codecs.jpeg`; they
release the GIL while they work, so a thread pool encodes the tiers of a frame
on several cores at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from framecast import constants as C
from framecast.bus import REDIS_ERRORS
from framecast.codecs.jpeg import JpegEncoder
from framecast.inference import metrics as M
from framecast.ladder import AnyTier, Tier, VideoTier
from framecast.logs import RateLimitedLog
from framecast.protocol import TierInfo

if TYPE_CHECKING:
    from framecast.bus.signals import KeyframeRequestPoller
    from framecast.codecs.h264_encoder import EncoderName, VideoTierEncoder

log = logging.getLogger("framecast.inference.encode")

@dataclass(frozen=True, slots=True)
class EncodedTier:
    """One tier of one frame: where it sits in the ladder, its bytes, picture size, codec and header flags."""

    index: int
    tier: AnyTier
    payload: bytes
    width: int
    height: int
    seconds: float
    codec: int = C.CODEC_JPEG
    flags: int = C.FLAG_KEYFRAME  # JPEG frames always stand alone
    keyframe_reason: str | None = None

    @property
    def quality(self) -> int:
        """The header's quality byte: the JPEG quality, 0 for video."""
        return 0 if self.codec == C.CODEC_H264 else self.tier.quality


@dataclass(frozen=True, slots=True)
class VideoOptions:
    """How video tiers are encoded (from the inference settings)."""

    fps: float = 30.0
    keyframe_interval_s: float = 2.0
    keyframe_min_gap_s: float = 0.25
    encoder: EncoderName = "auto"


def default_threads(n_tiers: int) -> int:
    return max(1, min(n_tiers, os.cpu_count() or 1))


class TierEncoder:
    """Encodes a frame into a chosen subset of the ladder, one pool task per tier."""

    def __init__(self, encoder: JpegEncoder, ladder: Sequence[AnyTier], frame_width: int, frame_height: int,
                 threads: int = 0, *, video: VideoOptions | None = None,
                 keyframe_poller: KeyframeRequestPoller | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.encoder, self.ladder = encoder, tuple(ladder)
        self.frame_size = (frame_width, frame_height)
        self.sizes = [t.fit(frame_width, frame_height) for t in self.ladder]
        self.threads = threads or default_threads(len(self.ladder))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="encode") if self.threads > 1 else None
        self.video: dict[int, VideoTierEncoder] = {}
        self._video_locks: dict[int, threading.Lock] = {}
        if any(isinstance(t, VideoTier) for t in self.ladder):
            from framecast.codecs.h264_encoder import VideoTierEncoder  # PyAV only when the ladder has video

            opts = video or VideoOptions()
            # x264's own threads would fight the tier threads for the cores; one video tier alone may use them
            only_video = len(self.ladder) == 1
            for i, t in enumerate(self.ladder):
                if isinstance(t, VideoTier):
                    self.video[i] = VideoTierEncoder(t, tier_index=i, fps=opts.fps,
                                                     keyframe_interval_s=opts.keyframe_interval_s,
                                                     min_keyframe_gap_s=opts.keyframe_min_gap_s,
                                                     input_format="rgb24", encoder=opts.encoder,
                                                     threads=0 if only_video else 1)
                    self._video_locks[i] = threading.Lock()
        self.keyframe_poller = keyframe_poller
        self.clock = clock
        self._video_active: set[int] = set()  # video tiers encoded for the previous frame
        self._poll_lock = threading.Lock()
        self._poll_errors = RateLimitedLog(log, "keyframe request polls failed", interval=5.0)

    def describe(self, index: int) -> TierInfo:
        """The tier's entry in the stream meta (video: `codec` = WebCodecs codec string)."""
        if index in self.video:
            return self.video[index].describe(*self.frame_size)
        tier = self.ladder[index]
        assert isinstance(tier, Tier)
        return tier.describe(*self.frame_size)

    def request_keyframe(self, index: int, *, source: str = "edge") -> bool:
        """Ask video tier `index` for an IDR at its next frame (thread-safe; False: one was pending).

        `source`: who asked (edge: a Keys.keyframe_request; started: demand began; lost: a frame
        never reached Redis). Before its first frame a tier needs none (the first frame is an IDR).
        """
        venc = self.video.get(index)
        if venc is None or venc.encoder is None:
            return False
        accepted = venc.request_keyframe(self.clock())
        M.KEYFRAME_REQUESTS.labels(venc.tier.name, source, "accepted" if accepted else "coalesced").inc()
        return accepted

    def lost(self, tiers: Sequence[EncodedTier]) -> None:
        """Frames encoded but never published: their successors reference them, so heal with an IDR."""
        for t in tiers:
            if t.codec == C.CODEC_H264:
                self.request_keyframe(t.index, source="lost")

    def _poll_keyframe_requests(self, indices: Sequence[int]) -> None:
        with self._poll_lock:  # several encode workers may call this at once
            self._poll_locked(indices)

    def _poll_locked(self, indices: Sequence[int]) -> None:
        video = [i for i in indices if i in self.video]
        started = [i for i in video if i not in self._video_active]
        self._video_active = set(video)
        for i in started:  # demand (re)started: a viewer can only start at a keyframe
            self.request_keyframe(i, source="started")
        if self.keyframe_poller is None or not video:
            return
        by_name = {self.ladder[i].name: i for i in video}
        try:
            requests = self.keyframe_poller.poll(list(by_name), self.clock())
        except REDIS_ERRORS as exc:
            M.REDIS_ERRORS.labels("keyframe").inc()
            self._poll_errors.event(type(exc).__name__)
            return
        for req in requests:
            if req.tier in by_name:
                self.request_keyframe(by_name[req.tier])

    def _one_video(self, rgb: np.ndarray, index: int) -> EncodedTier:
        venc = self.video[index]
        with self._video_locks[index]:  # one thread at a time per tier, whatever the encode workers
            out = venc.encode(rgb, self.clock())
            assert venc.encoder is not None
            width, height = venc.encoder.width, venc.encoder.height
        if out.keyframe_reason is not None:
            M.VIDEO_KEYFRAMES.labels(venc.tier.name, out.keyframe_reason).inc()
        return EncodedTier(index, venc.tier, out.data, width, height, out.encode_s, codec=C.CODEC_H264,
                           flags=C.FLAG_KEYFRAME if out.keyframe else 0, keyframe_reason=out.keyframe_reason)

    def _one(self, rgb: np.ndarray, index: int) -> EncodedTier:
        if index in self.video:
            return self._one_video(rgb, index)
        start = time.perf_counter()
        tier = self.ladder[index]
        assert isinstance(tier, Tier)
        w, h = self.sizes[index]
        img = rgb if (rgb.shape[1], rgb.shape[0]) == (w, h) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        payload = self.encoder.encode(img, tier.quality)
        return EncodedTier(index, tier, payload, w, h, time.perf_counter() - start)

    def encode(self, rgb: np.ndarray, indices: Sequence[int]) -> list[EncodedTier]:
        """The frame encoded into the tiers at `indices` (ladder positions), in that order."""
        if self.video:
            self._poll_keyframe_requests(indices)
        if self._pool is None or len(indices) < 2:
            return [self._one(rgb, i) for i in indices]
        return list(self._pool.map(lambda i: self._one(rgb, i), indices))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for i, venc in self.video.items():
            lock = self._video_locks[i]
            if lock.acquire(timeout=1.0):  # a stage thread still encoding keeps its encoder (process exits)
                try:
                    venc.close()
                finally:
                    lock.release()
