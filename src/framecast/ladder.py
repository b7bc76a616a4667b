"""Video tiers of the quality ladder: `name=WIDTHxHEIGHT@h264:RATE`.

A video tier sits in the same ladder string as the JPEG tiers of
`framecast.inference.tiers` (`NAME=WxH@QUALITY`); only the part after `@`
differs, so `parse_ladder` dispatches on it with `is_video_spec(item)`:

    video-high=1280x720@h264:2500k     average bitrate 2.5 Mbit/s (VBV capped)
    video-mid=1280x720@h264:1.2M       1.2 Mbit/s (k = 1000, M = 1 000 000 bit/s)
    video-q=1280x720@h264:crf23        constant quality CRF 23 (1..51, lower is better)
    video=640x360@h264                 CRF 23 (the default rate control)

As for JPEG tiers the size is a box: frames are scaled down to fit it, aspect
ratio kept, never up, and rounded down to even sides (4:2:0 chroma).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from framecast import constants as C

VIDEO_CODECS: Final = ("h264",)
DEFAULT_CRF: Final = 23
MIN_CRF: Final = 1  # 0 is lossless, which needs the High 4:4:4 profile that browsers do not decode
MAX_CRF: Final = 51
MIN_BITRATE: Final = 50_000
MAX_BITRATE: Final = 100_000_000
MIN_SIDE: Final = 16
MAX_WIDTH: Final = 4096  # H.264 level 5.2 at most; WebCodecs decoders stop around there
MAX_HEIGHT: Final = 2304

_ITEM_RE = re.compile(r"^\s*(?P<name>[^=\s]+)\s*=\s*(?P<size>[^@]*?)\s*@\s*(?P<codec>[A-Za-z][A-Za-z0-9]*)"
                      r"\s*(?::\s*(?P<rate>\S*))?\s*$")
_SIZE_RE = re.compile(r"^(?P<w>\d+)\s*x\s*(?P<h>\d+)$")
_BITRATE_RE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>[kKmM]?)$")
_CRF_RE = re.compile(r"^crf(?P<crf>\d+)$", re.IGNORECASE)
_VIDEO_MARK_RE = re.compile(r"@\s*[A-Za-z]")  # JPEG tiers have a number after '@'


@dataclass(frozen=True, slots=True)
class VideoTier:
    """One video rung: frames fit in `width` x `height`, encoded with `codec` at `bitrate` or `crf`."""

    name: str
    width: int
    height: int
    codec: Literal["h264"] = "h264"
    bitrate: int | None = None  # bit/s; None = constant quality
    crf: int | None = DEFAULT_CRF

    @property
    def quality(self) -> int:
        """The header's quality byte: 0 for video (rate control is not a JPEG quality)."""
        return 0

    @property
    def rate_label(self) -> str:
        return f"{self.bitrate // 1000}k" if self.bitrate is not None else f"crf{self.crf}"

    def spec(self) -> str:
        """The ladder item that parses back to this tier."""
        return f"{self.name}={self.width}x{self.height}@{self.codec}:{self.rate_label}"

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """Encoded size of a `width` x `height` frame: scaled down (never up) into the box, even sides."""
        if width < 2 or height < 2:
            raise ValueError(f"frame {width}x{height} too small for 4:2:0 video")
        scale = min(self.width / width, self.height / height, 1.0)
        w = max(2, round(width * scale) // 2 * 2)
        h = max(2, round(height * scale) // 2 * 2)
        return w, h

    def describe(self, frame_width: int, frame_height: int, codec_string: str) -> dict[str, Any]:
        """The tier as announced in the stream meta; `codec` carries the WebCodecs codec string.

        `codec_string` is `H264Encoder.codec_string` (e.g. "avc1.42C01F"); viewers pass it to
        `VideoDecoder.configure` as is, and the edge maps it back to the family "h264" with
        `codec_family` for the hello's codec negotiation.
        """
        w, h = self.fit(frame_width, frame_height)
        out: dict[str, Any] = {"name": self.name, "width": w, "height": h, "quality": 0, "codec": codec_string}
        if self.bitrate is not None:
            out["bitrate"] = self.bitrate
        else:
            out["crf"] = self.crf
        return out


def is_video_spec(item: str) -> bool:
    """True when a ladder item names a codec after '@' (a video tier), not a JPEG quality."""
    return _VIDEO_MARK_RE.search(item) is not None


def codec_family(codec: str) -> str:
    """The codec family a viewer names in its hello `codecs` list, for a tier's `codec` field.

    "avc1.42C01F" -> "h264"; "jpeg" -> "jpeg"; other strings are returned lower-cased.
    """
    lowered = codec.lower()
    if lowered.startswith(("avc1.", "avc3.")) or lowered == "h264":
        return "h264"
    return lowered


def parse_bitrate(text: str) -> int:
    """`2500k` -> 2_500_000, `1.5M` -> 1_500_000, `800000` -> 800_000 (bit/s)."""
    match = _BITRATE_RE.match(text)
    if not match:
        raise ValueError(f"bitrate {text!r} is not a number of bit/s with an optional k or M suffix (e.g. 2500k)")
    scale = {"": 1, "k": 1000, "m": 1_000_000}[match["unit"].lower()]
    return round(float(match["num"]) * scale)


def parse_video_tier(item: str) -> VideoTier:
    """Parse one ladder item `name=WxH@h264[:RATE]`; raise ValueError saying what is wrong."""
    shown = item.strip()
    match = _ITEM_RE.match(item)
    if not match:
        raise ValueError(f"video tier {shown!r} is not name=WIDTHxHEIGHT@h264:BITRATE or @h264:crfN "
                         f"(e.g. video-high=1280x720@h264:2500k)")
    name, codec = match["name"], match["codec"].lower()
    if not C.TIER_NAME_RE.match(name):
        raise ValueError(f"tier name {name!r} must match {C.TIER_NAME_RE.pattern}")
    size = _SIZE_RE.match(match["size"])
    if not size:
        raise ValueError(f"tier {name!r}: size {match['size']!r} is not WIDTHxHEIGHT (e.g. 1280x720)")
    w, h = int(size["w"]), int(size["h"])
    if not (MIN_SIDE <= w <= MAX_WIDTH and MIN_SIDE <= h <= MAX_HEIGHT):
        raise ValueError(f"tier {name!r}: size {w}x{h} outside {MIN_SIDE}x{MIN_SIDE}..{MAX_WIDTH}x{MAX_HEIGHT}")
    if codec not in VIDEO_CODECS:
        raise ValueError(f"tier {name!r}: unknown video codec {match['codec']!r}, expected one of "
                         f"{', '.join(VIDEO_CODECS)}")
    rate = match["rate"]
    if rate is None:
        return VideoTier(name, w, h, "h264", None, DEFAULT_CRF)
    if not rate:
        raise ValueError(f"tier {name!r}: empty rate after 'h264:', expected a bitrate (2500k) or crfN")
    crf_match = _CRF_RE.match(rate)
    if crf_match:
        crf = int(crf_match["crf"])
        if not MIN_CRF <= crf <= MAX_CRF:
            raise ValueError(f"tier {name!r}: CRF {crf} outside {MIN_CRF}..{MAX_CRF}")
        return VideoTier(name, w, h, "h264", None, crf)
    try:
        bitrate = parse_bitrate(rate)
    except ValueError as exc:
        raise ValueError(f"tier {name!r}: {exc} or crfN") from None
    if not MIN_BITRATE <= bitrate <= MAX_BITRATE:
        raise ValueError(f"tier {name!r}: bitrate {bitrate} bit/s outside {MIN_BITRATE}..{MAX_BITRATE}")
    return VideoTier(name, w, h, "h264", bitrate, None)


def check_video_order(tiers: Sequence[VideoTier]) -> None:
    """Video tiers of one ladder must be listed best first, as JPEG tiers are.

    Better = larger box, then (same box) a higher bitrate or a lower CRF. A bitrate
    tier and a CRF tier of the same box cannot be compared and are rejected.
    """
    for prev, tier in itertools.pairwise(tiers):
        area, prev_area = tier.width * tier.height, prev.width * prev.height
        if area < prev_area:
            continue
        if area == prev_area:
            if tier.bitrate is not None and prev.bitrate is not None and tier.bitrate < prev.bitrate:
                continue
            if tier.crf is not None and prev.crf is not None and tier.crf > prev.crf:
                continue
            if (tier.bitrate is None) != (prev.bitrate is None):
                raise ValueError(f"video tiers {prev.name!r} ({prev.spec()}) and {tier.name!r} ({tier.spec()}) "
                                 f"have the same size but one uses a bitrate and one a CRF: give them "
                                 f"different sizes or the same kind of rate")
        raise ValueError(f"video tier {tier.name!r} ({tier.spec()}) is not below {prev.name!r} ({prev.spec()}): "
                         f"list tiers best first")
