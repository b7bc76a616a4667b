"""H.264 encoding of one video tier with PyAV: numpy frames in, Annex B access units out.

`H264Encoder` wraps a PyAV encoder context (`libx264` `preset=ultrafast`,
`tune=zerolatency`, no B-frames, no look-ahead: one access unit out per frame
in, at once; or `h264_nvenc` in its ultra-low-latency mode where CUDA is
present). Every keyframe is an IDR with SPS and PPS in band in front of it, so
a decoder (WebCodecs in Annex B mode, PyAV) can start at any keyframe and no
out-of-band decoder configuration exists. Keyframes come

* on the first frame, and on the first frame after a pause in encoding (the
  inference service encodes a tier only while an edge asks for it);
* every `keyframe_interval_s` seconds (time-based, so the interval holds
  whatever the frame rate);
* on demand: `request_keyframe()` (thread-safe) makes the next frame an IDR,
  rate-limited to one requested IDR per `min_keyframe_gap_s`; requests inside
  the gap are deferred and coalesced, never lost.

Bitrate tiers use a VBV of `vbv_s` (0.25 s) of the bitrate: it caps a keyframe at
about a quarter second of bits (35-50 KB at 2.5 Mbit/s at 720p, against 66-113 KB
with a 1 s buffer, same mean PSNR), so an IDR does not stall a paced link.

PyAV releases the GIL around x264 and the colour conversion (OpenCV when
installed, else swscale) releases it too, so tiers encode in parallel threads.
`VideoTierEncoder` adds what the inference pipeline needs around it: scaling
into the tier's box, re-creating the encoder when the frame size changes, and
the wire message (`framecast.protocol.encode_frame`, codec H.264, keyframe flag).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal

import av
import numpy as np
import numpy.typing as npt

from framecast.codecs import h264
from framecast.ladder import VideoTier
from framecast.protocol import TierInfo

_cv2: Any
try:  # OpenCV converts RGB -> I420 about 3x faster than swscale here, and releases the GIL
    import cv2 as _cv2
except ImportError:  # pragma: no cover - opencv-python-headless is a dependency of the inference service
    _cv2 = None

log = logging.getLogger("framecast.codecs.h264_encoder")

InputFormat = Literal["rgb24", "bgr24", "yuv420p"]
EncoderName = Literal["auto", "libx264", "h264_nvenc"]
KeyframeReason = Literal["first", "interval", "requested", "resumed", "encoder"]
Image = npt.NDArray[np.uint8]

KEYFRAME_REASONS: Final[tuple[KeyframeReason, ...]] = ("first", "interval", "requested", "resumed", "encoder")
# x264 would insert its own IDRs every `keyint` frames; keyframes here are time-based instead
_KEYINT_INFINITE: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class EncodedVideoFrame:
    """One access unit: Annex B bytes (SPS + PPS + IDR when `keyframe`)."""

    data: bytes
    keyframe: bool
    index: int  # frames fed to this encoder before this one
    keyframe_reason: KeyframeReason | None
    encode_s: float  # wall time of colour conversion + encoding


@dataclass(slots=True)
class EncoderCounters:
    """Plain counters; the inference service turns them into Prometheus metrics."""

    frames: int = 0
    bytes: int = 0
    keyframes: int = 0
    keyframe_requests: int = 0  # calls of request_keyframe
    keyframe_requests_coalesced: int = 0  # requests folded into one already pending
    keyframe_requests_deferred: int = 0  # requests that had to wait for min_keyframe_gap_s


def available_encoders() -> set[str]:
    """The H.264 encoders this PyAV build offers (libx264, h264_nvenc, ...)."""
    return set(av.codec.codecs_available) & {"libx264", "h264_nvenc"}


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class H264Encoder:
    """Encodes fixed-size frames of one tier into H.264 access units (one in, one out)."""

    def __init__(self, width: int, height: int, *, bitrate: int | None = None, crf: int | None = 23,
                 fps: float = 30.0, keyframe_interval_s: float = 2.0, min_keyframe_gap_s: float = 0.25,
                 resume_after_s: float = 1.0, input_format: InputFormat = "rgb24", encoder: EncoderName = "libx264",
                 threads: int = 0, vbv_s: float = 0.25) -> None:
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise ValueError(f"H.264 4:2:0 needs even frame sides of at least 2, got {width}x{height}")
        if bitrate is None and crf is None:
            raise ValueError("give a bitrate or a CRF")
        if fps <= 0 or keyframe_interval_s <= 0 or min_keyframe_gap_s < 0 or resume_after_s <= 0 or vbv_s <= 0:
            raise ValueError("fps, keyframe_interval_s, resume_after_s and vbv_s must be > 0, "
                             "min_keyframe_gap_s >= 0")
        self.width, self.height = width, height
        self.bitrate, self.crf = bitrate, crf if bitrate is None else None
        self.fps = fps
        self.keyframe_interval_s = keyframe_interval_s
        self.min_keyframe_gap_s = min_keyframe_gap_s
        self.resume_after_s = resume_after_s
        self.input_format: InputFormat = input_format
        self.threads, self.vbv_s = threads, vbv_s
        self.counters = EncoderCounters()
        self._lock = threading.Lock()
        self._pending_request = False
        self._index = 0
        self._last_key_s: float | None = None
        self._last_encode_s: float | None = None
        self._codec_string: str | None = None
        self._pts = 1  # pts 0 was the probe frame
        self._ctx, self.encoder_name = self._open(encoder)

    # --- setup -----------------------------------------------------------
    def _open(self, encoder: EncoderName) -> tuple[Any, str]:
        candidates: list[str] = ["h264_nvenc", "libx264"] if encoder == "auto" else [encoder]
        errors: list[str] = []
        for name in candidates:
            if name not in av.codec.codecs_available:
                errors.append(f"{name}: not in this PyAV build")
                continue
            try:
                ctx = self._context(name)
                self._codec_string = self._probe(ctx)
                return ctx, name
            except (av.error.FFmpegError, ValueError, OSError, RuntimeError) as exc:
                errors.append(f"{name}: {exc}")
                if len(candidates) > 1:
                    log.info("H.264 encoder %s unusable here (%s), trying the next", name, exc)
        raise RuntimeError(f"no usable H.264 encoder ({'; '.join(errors)})")

    def _context(self, name: str) -> Any:
        ctx: Any = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        rate = _fps_fraction(self.fps)
        ctx.framerate = rate
        ctx.time_base = 1 / rate
        ctx.gop_size = _KEYINT_INFINITE
        ctx.max_b_frames = 0
        if self.threads:
            ctx.thread_count = self.threads
        options: dict[str, str]
        if name == "h264_nvenc":
            options = {"preset": "p1", "tune": "ull", "zerolatency": "1", "delay": "0", "forced-idr": "1",
                       "bf": "0", "profile": "high"}
            if self.bitrate is not None:
                options.update(rc="cbr", b=str(self.bitrate), maxrate=str(self.bitrate),
                               bufsize=str(int(self.bitrate * self.vbv_s)))
            else:
                options.update(rc="constqp", qp=str(self.crf))
        else:
            # zerolatency: no look-ahead, no frame threads (sliced threads), so one packet per frame at once
            options = {"preset": "ultrafast", "tune": "zerolatency", "forced-idr": "1",
                       "x264-params": "scenecut=0:bframes=0"}
            if self.bitrate is not None:
                ctx.bit_rate = self.bitrate
                options.update(maxrate=str(self.bitrate), bufsize=str(int(self.bitrate * self.vbv_s)))
            else:
                options["crf"] = str(self.crf)
        ctx.options = options
        ctx.open()
        return ctx

    def _probe(self, ctx: Any) -> str:
        """Encode one grey frame: checks one packet out per frame in, and reads the codec string.

        The probe's output is discarded; the next real frame is forced to be an IDR ("first").
        """
        grey = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane in grey.planes:
            plane.update(bytes([128]) * plane.buffer_size)
        grey.pts = 0
        grey.pict_type = av.video.frame.PictureType.I
        packets = list(ctx.encode(grey))
        found = h264.codec_string(bytes(packets[0])) if len(packets) == 1 else None
        if found is None:
            raise RuntimeError(f"gave {len(packets)} packets for the first frame, expected one IDR with SPS "
                               f"(an encoder that delays output adds latency)")
        return found

    # --- properties ------------------------------------------------------
    @property
    def codec_string(self) -> str:
        """WebCodecs codec string from the encoder's actual SPS (e.g. "avc1.42C01F")."""
        return self._codec_string or "avc1.42E01F"

    @property
    def rate_label(self) -> str:
        return f"{self.bitrate // 1000}k" if self.bitrate is not None else f"crf{self.crf}"

    # --- keyframes -------------------------------------------------------
    def request_keyframe(self, now: float | None = None) -> bool:
        """Make the next frame an IDR (thread-safe). False: folded into a request already pending.

        The IDR is deferred until `min_keyframe_gap_s` after the previous keyframe (the rate limit);
        `now` is on the clock of `encode` (monotonic seconds by default).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            self.counters.keyframe_requests += 1
            if self._pending_request:
                self.counters.keyframe_requests_coalesced += 1
                return False
            self._pending_request = True
            last = self._last_key_s
            if last is not None and now - last < self.min_keyframe_gap_s:
                self.counters.keyframe_requests_deferred += 1
            return True

    def _keyframe_reason(self, now: float) -> KeyframeReason | None:
        if self._last_key_s is None:
            return "first"
        if self._last_encode_s is not None and now - self._last_encode_s >= self.resume_after_s:
            return "resumed"
        since_key = now - self._last_key_s
        if self._pending_request and since_key >= self.min_keyframe_gap_s:
            return "requested"
        if since_key >= self.keyframe_interval_s:
            return "interval"
        return None

    # --- encoding --------------------------------------------------------
    def _to_frame(self, image: Image) -> Any:
        expected = (self.height * 3 // 2, self.width) if self.input_format == "yuv420p" \
            else (self.height, self.width, 3)
        if image.shape != expected or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 {self.input_format} array of shape {expected}, "
                             f"got {image.dtype} {image.shape}")
        if self.input_format == "yuv420p":
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="yuv420p")
        if _cv2 is not None:
            code = _cv2.COLOR_RGB2YUV_I420 if self.input_format == "rgb24" else _cv2.COLOR_BGR2YUV_I420
            i420: Image = _cv2.cvtColor(image, code)
            return av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=self.input_format)
        return frame.reformat(format="yuv420p")  # pragma: no cover

    def encode(self, image: Image, now: float | None = None) -> EncodedVideoFrame:
        """Encode one frame (shape `height x width x 3`, or I420 planes for yuv420p); `now`: monotonic s."""
        started = time.perf_counter()
        now = time.monotonic() if now is None else now
        reason = self._keyframe_reason(now)
        frame = self._to_frame(image)
        frame.pts = self._pts
        self._pts += 1
        if reason is not None:
            frame.pict_type = av.video.frame.PictureType.I
        packets = list(self._ctx.encode(frame))
        if len(packets) != 1:
            # zerolatency x264 and ull nvenc emit exactly one packet per frame; anything else is a setup bug
            raise RuntimeError(f"{self.encoder_name} returned {len(packets)} packets for one frame")
        data = bytes(packets[0])
        keyframe = bool(packets[0].is_keyframe) or h264.is_idr(data)
        if keyframe:
            if reason is None:
                reason = "encoder"
            self._last_key_s = now
            with self._lock:
                # any keyframe satisfies a pending request: the requester needs a fresh IDR, whatever its cause
                self._pending_request = False
            found = h264.codec_string(data)
            if found is not None:
                self._codec_string = found
            self.counters.keyframes += 1
        else:
            reason = None
        self._last_encode_s = now
        self.counters.frames += 1
        self.counters.bytes += len(data)
        index = self._index
        self._index += 1
        return EncodedVideoFrame(data, keyframe, index, reason, time.perf_counter() - started)

    def close(self) -> None:
        """Flush and release the encoder (frames still inside it are discarded)."""
        try:
            list(self._ctx.encode(None))
        except (av.error.FFmpegError, ValueError):  # pragma: no cover - already flushed or closed
            pass


@functools.lru_cache(maxsize=32)
def probe_codec_string(width: int, height: int, *, bitrate: int | None = None, crf: int | None = 23,
                       fps: float = 30.0, encoder: EncoderName = "libx264") -> str:
    """The codec string an encoder with these settings writes (one throwaway probe encoder, cached)."""
    probe = H264Encoder(width, height, bitrate=bitrate, crf=crf, fps=fps, encoder=encoder)
    probe.close()
    return probe.codec_string


class VideoTierEncoder:
    """One video tier of the inference pipeline: scale into the box, encode, build the wire message.

    Not thread-safe except `request_keyframe`: call `encode` from one worker thread at a time.
    The encoder is created at the first frame (its size decides the tier's picture size) and
    created anew when the source frame size changes.
    """

    def __init__(self, tier: VideoTier, *, tier_index: int, fps: float = 30.0, keyframe_interval_s: float = 2.0,
                 min_keyframe_gap_s: float = 0.25, input_format: Literal["rgb24", "bgr24"] = "rgb24",
                 encoder: EncoderName = "libx264", threads: int = 0, vbv_s: float = 0.25) -> None:
        self.tier, self.tier_index = tier, tier_index
        self._kwargs: dict[str, Any] = dict(bitrate=tier.bitrate, crf=tier.crf, fps=fps,
                                            keyframe_interval_s=keyframe_interval_s,
                                            min_keyframe_gap_s=min_keyframe_gap_s, input_format=input_format,
                                            encoder=encoder, threads=threads, vbv_s=vbv_s)
        self.encoder: H264Encoder | None = None
        self._source_size: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _encoder_for(self, width: int, height: int) -> H264Encoder:
        if self.encoder is None or self._source_size != (width, height):
            if self.encoder is not None:
                self.encoder.close()
            w, h = self.tier.fit(width, height)
            encoder = H264Encoder(w, h, **self._kwargs)
            with self._lock:
                self.encoder, self._source_size = encoder, (width, height)
        return self.encoder

    def describe(self, frame_width: int, frame_height: int) -> TierInfo:
        """The tier's entry in the stream meta; safe from another thread than the one encoding.

        Uses the live encoder's codec string when it encodes this size, else a cached probe.
        """
        with self._lock:
            encoder, source = self.encoder, self._source_size
        if encoder is not None and source == (frame_width, frame_height):
            codec = encoder.codec_string
        else:
            w, h = self.tier.fit(frame_width, frame_height)
            kw = self._kwargs
            codec = probe_codec_string(w, h, bitrate=kw["bitrate"], crf=kw["crf"], fps=kw["fps"],
                                       encoder=kw["encoder"])
        return self.tier.describe(frame_width, frame_height, codec)

    def request_keyframe(self, now: float | None = None) -> bool:
        """Thread-safe; see `H264Encoder.request_keyframe`."""
        with self._lock:
            if self.encoder is None:
                return False  # the first frame is a keyframe anyway
            return self.encoder.request_keyframe(now)

    def encode(self, image: Image, now: float | None = None) -> EncodedVideoFrame:
        """Encode a full-size source frame (scaled into the tier's box with OpenCV if needed)."""
        height, width = image.shape[:2]
        encoder = self._encoder_for(width, height)
        if (encoder.width, encoder.height) != (width, height):
            if _cv2 is None:  # pragma: no cover
                raise RuntimeError("scaling a frame into a video tier needs OpenCV")
            scaled: Image = _cv2.resize(image, (encoder.width, encoder.height), interpolation=_cv2.INTER_AREA)
            image = scaled
        return encoder.encode(image, now)

    def close(self) -> None:
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None
