"""Optional H.264 decoding for the Python client: Annex B access units in, BGR numpy frames out.

`H264Decoder` tolerates a stream that starts mid-GOP (a viewer joined, or the
client dropped frames): until it has seen a keyframe it returns None without
feeding the decoder, so it never shows the grey smear of P-frames decoded
without their reference. After a decode error, or `reset()` (call it whenever
the client skipped a frame), it waits for the next keyframe again.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt

from framecast.codecs import h264

_cv2: Any
try:
    import cv2 as _cv2
except ImportError:  # pragma: no cover - the client works without OpenCV, a little slower
    _cv2 = None

log = logging.getLogger("framecast.codecs.h264_decoder")

OutputFormat = Literal["bgr24", "rgb24"]


class H264Decoder:
    """Decodes one tier's access units in order; one picture out per access unit in."""

    def __init__(self, output_format: OutputFormat = "bgr24", threads: int = 1) -> None:
        self.output_format: OutputFormat = output_format
        self.threads = threads
        self._ctx = self._open()
        self.started = False  # a keyframe has been fed since the last reset
        self.decoded = 0
        self.skipped = 0  # access units dropped while waiting for a keyframe
        self.errors = 0

    def _open(self) -> Any:
        ctx = av.CodecContext.create("h264", "r")
        # slice threads only: frame threads would hold pictures back by one frame per thread
        ctx.thread_type = "SLICE"
        ctx.thread_count = self.threads
        ctx.open()
        return ctx

    def reset(self) -> None:
        """Forget the reference pictures: the next picture comes from the next keyframe."""
        self.started = False
        self._ctx = self._open()

    def decode(self, data: bytes, keyframe: bool | None = None) -> npt.NDArray[np.uint8] | None:
        """Decode one access unit; `keyframe` is the header flag (None: look for an IDR in the bytes).

        Returns the picture (height x width x 3), or None while waiting for a keyframe or after an error.
        """
        is_key = h264.is_idr(data) if keyframe is None else keyframe
        if not self.started:
            if not is_key:
                self.skipped += 1
                return None
            if self.decoded:  # a fresh decoder for a fresh start: no stale references, no stale SPS
                self._ctx = self._open()
            self.started = True
        try:
            frames = self._ctx.decode(av.Packet(data))
        except (av.error.FFmpegError, ValueError) as exc:
            self.errors += 1
            log.debug("H.264 decode error, waiting for a keyframe: %s", exc)
            self.started = False
            return None
        if not frames:
            return None
        self.decoded += 1
        return self._to_array(frames[-1])

    def _to_array(self, frame: Any) -> npt.NDArray[np.uint8]:
        if _cv2 is not None and frame.format.name == "yuv420p":
            i420 = frame.to_ndarray(format="yuv420p")
            code = _cv2.COLOR_YUV2BGR_I420 if self.output_format == "bgr24" else _cv2.COLOR_YUV2RGB_I420
            out: npt.NDArray[np.uint8] = _cv2.cvtColor(i420, code)
            return out
        result: npt.NDArray[np.uint8] = frame.to_ndarray(format=self.output_format)
        return result
