"""JPEG encoding: two encoders behind one interface, both releasing the GIL while they work.

`simplejpeg` (libjpeg-turbo, takes RGB directly) and OpenCV's `imencode`
(libjpeg-turbo inside the wheel, wants BGR); `make_encoder(name)` picks one.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
import simplejpeg

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
