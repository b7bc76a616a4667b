"""JPEG encoding of one frame into every demanded tier, the tiers in parallel.

Two encoders behind one interface: `simplejpeg` (libjpeg-turbo, takes RGB
directly) and OpenCV's `imencode`. Both release the GIL while they work, so a
thread pool encodes the tiers of a frame on several cores at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import simplejpeg

from framecast.inference.tiers import Tier

ENCODERS = ("simplejpeg", "opencv")


class JpegEncoder(Protocol):
    name: str

    def encode(self, rgb: np.ndarray, quality: int) -> bytes: ...


class SimpleJpegEncoder:
    """libjpeg-turbo through simplejpeg, 4:2:0 chroma like browsers' own encoders and OpenCV's default."""

    name = "simplejpeg"

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        return bytes(simplejpeg.encode_jpeg(rgb, quality=quality, colorspace="RGB", colorsubsampling="420",
                                            fastdct=True))


class OpenCvEncoder:
    """OpenCV's imencode (libjpeg-turbo inside the wheel); it wants BGR."""

    name = "opencv"

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("cv2.imencode failed")
        return buf.tobytes()


def make_encoder(name: str) -> JpegEncoder:
    if name == "simplejpeg":
        return SimpleJpegEncoder()
    if name == "opencv":
        return OpenCvEncoder()
    raise ValueError(f"unknown encoder {name!r} (one of {', '.join(ENCODERS)})")


@dataclass(frozen=True, slots=True)
class EncodedTier:
    """One tier of one frame: where it sits in the ladder, its JPEG bytes and picture size."""

    index: int
    tier: Tier
    payload: bytes
    width: int
    height: int
    seconds: float


def default_threads(n_tiers: int) -> int:
    return max(1, min(n_tiers, os.cpu_count() or 1))


class TierEncoder:
    """Encodes a frame into a chosen subset of the ladder, one pool task per tier."""

    def __init__(self, encoder: JpegEncoder, ladder: Sequence[Tier], frame_width: int, frame_height: int,
                 threads: int = 0) -> None:
        self.encoder, self.ladder = encoder, tuple(ladder)
        self.sizes = [t.fit(frame_width, frame_height) for t in self.ladder]
        self.threads = threads or default_threads(len(self.ladder))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="encode") if self.threads > 1 else None

    def _one(self, rgb: np.ndarray, index: int) -> EncodedTier:
        start = time.perf_counter()
        tier = self.ladder[index]
        w, h = self.sizes[index]
        img = rgb if (rgb.shape[1], rgb.shape[0]) == (w, h) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        payload = self.encoder.encode(img, tier.quality)
        return EncodedTier(index, tier, payload, w, h, time.perf_counter() - start)

    def encode(self, rgb: np.ndarray, indices: Sequence[int]) -> list[EncodedTier]:
        """The frame encoded into the tiers at `indices` (ladder positions), in that order."""
        if self._pool is None or len(indices) < 2:
            return [self._one(rgb, i) for i in indices]
        return list(self._pool.map(lambda i: self._one(rgb, i), indices))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
