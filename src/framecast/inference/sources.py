"""Frame sources: a synthetic test pattern, video files, cameras and network streams.

A source hands out RGB uint8 frames of the service's working size (the centre
cropped to its aspect ratio, then scaled: never distorted), each stamped
with its capture time (`framecast.bus.now_us()`, taken when the frame exists).
Problems at start raise `SourceError` (the service exits 2 naming the source);
at run time a lost camera or stream raises `SourceLost` and the capture loop
reopens it with back-off; a file without `--loop` raises `SourceEnded` at its end.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's own warnings would bury our one-line errors
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # quiet

import cv2
import numpy as np

from framecast.bus import now_us
from framecast.logs import redact_url

OPEN_TIMEOUT_MS = 5000


class SourceError(Exception):
    """The source cannot be used at all (missing file, unreadable codec, no such device or URL)."""


class SourceLost(Exception):
    """A running camera or stream failed; reopening may help."""


class SourceEnded(Exception):
    """A file source reached its end and does not loop."""


@dataclass(slots=True)
class Captured:
    """One frame as captured: RGB uint8, height x width x 3, and when it was taken."""

    image: np.ndarray
    capture_us: int


class Source(Protocol):
    description: str
    fps: float  # native rate
    paced: bool  # True: the capture loop spaces reads at `fps`; False: reads block at the device's own rate

    def read(self, frame_id: int) -> Captured: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


class Pacer:
    """Spaces frames `1/fps` apart without a burst after a stall (clock passed in, seconds)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._next: float | None = None

    def wait_time(self, now: float) -> float:
        return 0.0 if self._next is None else max(0.0, self._next - now)

    def mark(self, now: float) -> None:
        """A frame was taken at `now`: schedule the next one."""
        if self._next is None or now - self._next > self.period:
            self._next = now + self.period  # late by more than a frame: restart the schedule, never catch up
        else:
            self._next += self.period


class SyntheticSource:
    """A moving test pattern with the frame id and capture time drawn in, so drops and latency show to the eye."""

    paced = True

    def __init__(self, width: int, height: int, fps: float) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.description = f"synthetic {width}x{height}@{fps:g}"
        # a horizontally periodic colour field twice as wide as the frame: each frame is a window into it
        x = np.linspace(0.0, 4.0 * math.pi, 2 * width, endpoint=False, dtype=np.float32)
        y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        r = 0.5 + 0.5 * np.sin(x[None, :] + 0.0 + 2.0 * y)
        g = 0.5 + 0.5 * np.sin(x[None, :] * 2.0 + 2.1 - 3.0 * y)
        b = 0.5 + 0.5 * np.sin(x[None, :] * 0.5 + 4.2 + 1.5 * y)
        field = np.stack([r, g, b], axis=-1) * 200.0 + 30.0
        grid = np.zeros((height, 2 * width), dtype=bool)
        step = max(8, height // 12)
        grid[::step, :] = True
        grid[:, ::step] = True
        field[grid] = 245.0
        self._background = np.ascontiguousarray(field.astype(np.uint8))
        self._scale = height / 720.0

    def read(self, frame_id: int) -> Captured:
        capture_us = now_us()
        w, h, s = self.width, self.height, self._scale
        offset = int(frame_id * 4 * max(s, 0.25)) % w
        img = self._background[:, offset:offset + w].copy()
        t = frame_id / self.fps
        # a bouncing ball and a clock hand that turns once per second of frames
        bx = int((0.5 + 0.4 * math.sin(t * 1.3)) * w)
        by = int((0.5 + 0.35 * math.sin(t * 2.1 + 1.0)) * h)
        cv2.circle(img, (bx, by), max(4, int(60 * s)), (255, 240, 40), -1, cv2.LINE_AA)
        cx, cy, rad = w - int(110 * s), int(110 * s), int(90 * s)
        angle = 2.0 * math.pi * (frame_id % max(1, round(self.fps))) / max(1, round(self.fps))
        cv2.circle(img, (cx, cy), rad, (20, 20, 20), -1, cv2.LINE_AA)
        cv2.line(img, (cx, cy), (cx + int(rad * math.sin(angle)), cy - int(rad * math.cos(angle))),
                 (255, 255, 255), max(2, int(8 * s)), cv2.LINE_AA)
        # one box per frame of a second: a dropped frame leaves its box unlit
        n = max(1, min(60, round(self.fps)))
        box = max(4, int((w - 40 * s) / n))
        lit = frame_id % n
        y0 = h - int(30 * s) - box
        x0 = int(20 * s)
        cv2.rectangle(img, (x0, y0), (x0 + n * box, y0 + box), (0, 0, 0), -1)
        cv2.rectangle(img, (x0 + lit * box, y0), (x0 + (lit + 1) * box - 2, y0 + box), (255, 60, 60), -1)
        stamp = time.strftime("%H:%M:%S", time.gmtime(capture_us / 1e6)) + f".{capture_us % 1_000_000:06d}"
        self._text(img, f"frame {frame_id}", (int(30 * s), int(90 * s)), 2.4 * s)
        self._text(img, f"capture {stamp} UTC", (int(30 * s), int(160 * s)), 1.4 * s)
        return Captured(img, capture_us)

    @staticmethod
    def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
        thick = max(1, int(3 * scale))
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 4, cv2.LINE_AA)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class VideoSource:
    """A file, camera or network stream read through OpenCV (FFmpeg, V4L2, ...)."""

    def __init__(self, spec: str, width: int, height: int, *, loop: bool = False, fallback_fps: float = 30.0) -> None:
        self.spec, self.width, self.height, self.loop = spec, width, height, loop
        self.kind = "file" if spec.startswith("file:") else "camera" if spec.startswith("camera:") else "url"
        self.paced = self.kind == "file"  # live sources deliver at their own rate; pacing them would add lag
        self.description = redact_url(spec)
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None
        if self.kind == "file":
            path = Path(spec[len("file:"):])
            if not path.is_file():
                raise SourceError(f"source {spec}: file not found: {path}")
            self._path = str(path)
        self._open(error=SourceError)
        native = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0.0
        self.fps = float(native) if native and math.isfinite(native) and 0 < native <= 240 else fallback_fps

    def _capture(self) -> cv2.VideoCapture:
        if self.kind == "file":
            return cv2.VideoCapture(self._path)
        if self.kind == "camera":
            cap = cv2.VideoCapture(int(self.spec[len("camera:"):]))
            if cap.isOpened():
                # ask for the working size (the driver picks the nearest it has) and the shortest queue
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            return cap
        return cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                                            cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS])

    def _open(self, error: type[Exception]) -> None:
        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            what = {"file": "cannot open the file (unsupported container or codec?)",
                    "camera": "no such camera or it cannot be opened",
                    "url": "cannot open the stream (unreachable, refused or not a video)"}[self.kind]
            raise error(f"source {self.description}: {what}")
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise error(f"source {self.description}: opened but no frame could be decoded "
                        "(unsupported codec or empty?)")
        self._cap, self._pending = cap, frame

    def read(self, frame_id: int) -> Captured:
        frame: np.ndarray | None = self._pending
        self._pending = None
        if frame is None:
            if self._cap is None:
                raise SourceLost(f"source {self.description} is closed")
            ok, frame = self._cap.read()
            if not ok or frame is None:
                if self.kind != "file":
                    raise SourceLost(f"source {self.description}: read failed")
                if not self.loop:
                    raise SourceEnded(f"source {self.description} ended")
                self._open(error=SourceLost)  # start again from the first frame
                frame, self._pending = self._pending, None
        if frame is None:
            raise SourceLost(f"source {self.description}: no frame")
        capture_us = now_us()
        return Captured(self._fit(frame), capture_us)

    def _fit(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        bgr = crop_to_aspect(bgr, self.width, self.height)
        if bgr.shape[0] != self.height or bgr.shape[1] != self.width:
            shrink = bgr.shape[0] > self.height
            bgr = cv2.resize(bgr, (self.width, self.height),
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def reopen(self) -> None:
        self._open(error=SourceLost)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def crop_to_aspect(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The centre of `image` with the aspect ratio of width x height (a view: no copy, no distortion)."""
    h, w = image.shape[:2]
    if w * height > h * width:  # too wide: crop the sides
        keep = max(1, round(h * width / height))
        x0 = (w - keep) // 2
        return image[:, x0:x0 + keep]
    if w * height < h * width:  # too tall: crop top and bottom
        keep = max(1, round(w * height / width))
        y0 = (h - keep) // 2
        return image[y0:y0 + keep]
    return image


def open_source(spec: str, width: int, height: int, *, fps: float, loop: bool = False) -> Source:
    """Open the source named by a `--source` value; raise SourceError with a one-line reason."""
    if spec == "synthetic":
        return SyntheticSource(width, height, fps)
    if spec.startswith(("file:", "camera:", "rtsp://", "rtsps://", "http://", "https://")):
        return VideoSource(spec, width, height, loop=loop, fallback_fps=fps)
    raise SourceError(f"source {redact_url(spec)!r}: unknown kind (synthetic, file:PATH, camera:INDEX, rtsp://, http(s)://)")
