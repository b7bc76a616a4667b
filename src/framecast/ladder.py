"""The quality ladder: the one home of "tier".

A stream's ladder is a list of named tiers, best first; a tier's position is
the `tier` index in every frame header. Each tier is a size box (frames are
scaled down to fit it, aspect ratio kept, never up) and either a JPEG quality
or an H.264 rate:

    high=1280x720@85                   JPEG, quality 85
    video-high=1280x720@h264:2500k     H.264, average bitrate 2.5 Mbit/s (VBV capped)
    video-mid=1280x720@h264:1.2M       1.2 Mbit/s (k = 1000, M = 1 000 000 bit/s)
    video-q=1280x720@h264:crf23        constant quality CRF 23 (1..51, lower is better)
    video=640x360@h264                 CRF 23 (the default rate control)

Video sides are rounded down to even numbers (4:2:0 chroma).

Owned here: parsing the ladder (`parse_ladder`, once per service start), the
tier as announced in the stream meta and the hello (`protocol.TierInfo`, read
back with `announced_tiers`), the codec family a viewer names in its hello
(`codec_family`), which tiers a viewer may get (`tiers_for`), which tiers
automatic choice moves along (`auto_rungs`) and the frame-size estimates the
tier choice needs (`estimate_frame_sizes`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from framecast import constants as C
from framecast.protocol import TierInfo

# H.264 tiers first (what viewers with a decoder get: a sixth to a tenth of the bytes of a JPEG tier of the
# same picture), then the JPEG tiers every viewer can decode
DEFAULT_LADDER: Final = ("video-high=1280x720@h264:2500k,video-low=640x360@h264:800k,"
                         "high=1280x720@85,mid=1280x720@70,low=640x360@60")
MAX_TIERS: Final = 8
MIN_SIDE: Final = 16
JPEG_MAX_WIDTH: Final = 7680
JPEG_MAX_HEIGHT: Final = 4320
VIDEO_CODECS: Final = ("h264",)
DEFAULT_CRF: Final = 23
MIN_CRF: Final = 1  # 0 is lossless, which needs the High 4:4:4 profile that browsers do not decode
MAX_CRF: Final = 51
MIN_BITRATE: Final = 50_000
MAX_BITRATE: Final = 100_000_000
VIDEO_MAX_WIDTH: Final = 4096  # H.264 level 5.2 at most; WebCodecs decoders stop around there
VIDEO_MAX_HEIGHT: Final = 2304

_ITEM_RE = re.compile(r"^\s*(?P<name>[^=\s]+)\s*=\s*(?P<size>[^@]*?)\s*@\s*(?P<codec>[A-Za-z][A-Za-z0-9]*)"
                      r"\s*(?::\s*(?P<rate>\S*))?\s*$")
_SIZE_RE = re.compile(r"^(?P<w>\d+)\s*x\s*(?P<h>\d+)$")
_BITRATE_RE = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>[kKmM]?)$")
_CRF_RE = re.compile(r"^crf(?P<crf>\d+)$", re.IGNORECASE)
_VIDEO_MARK_RE = re.compile(r"@\s*[A-Za-z]")  # JPEG tiers have a number after '@'


_TIER_RE = re.compile(r"^\s*(?P<name>[^=\s]+)\s*=\s*(?P<w>\d+)\s*x\s*(?P<h>\d+)\s*@\s*(?P<q>\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Tier:
    """One JPEG rung of the ladder: frames fit in `width` x `height`, encoded at JPEG `quality`."""

    name: str
    width: int
    height: int
    quality: int

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """Size of a `width` x `height` frame scaled down (never up) to fit this tier's box."""
        scale = min(self.width / width, self.height / height, 1.0)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def describe(self, frame_width: int, frame_height: int) -> TierInfo:
        """The tier as announced in the stream meta (actual picture size of its frames)."""
        w, h = self.fit(frame_width, frame_height)
        return TierInfo(name=self.name, width=w, height=h, quality=self.quality, codec="jpeg")


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

    def describe(self, frame_width: int, frame_height: int, codec_string: str) -> TierInfo:
        """The tier as announced in the stream meta; `codec` carries the WebCodecs codec string.

        `codec_string` is `H264Encoder.codec_string` (e.g. "avc1.42C01F"); viewers pass it to
        `VideoDecoder.configure` as is, and the edge maps it back to the family "h264" with
        `codec_family` for the hello's codec negotiation.
        """
        w, h = self.fit(frame_width, frame_height)
        return TierInfo(name=self.name, width=w, height=h, quality=0, codec=codec_string,
                        bitrate=self.bitrate or 0, crf=self.crf if self.bitrate is None and self.crf else 0)


def is_video_spec(item: str) -> bool:
    """True when a ladder item names a codec after '@' (a video tier), not a JPEG quality."""
    return _VIDEO_MARK_RE.search(item) is not None


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
    if not (MIN_SIDE <= w <= VIDEO_MAX_WIDTH and MIN_SIDE <= h <= VIDEO_MAX_HEIGHT):
        raise ValueError(f"tier {name!r}: size {w}x{h} outside "
                         f"{MIN_SIDE}x{MIN_SIDE}..{VIDEO_MAX_WIDTH}x{VIDEO_MAX_HEIGHT}")
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


# --- the ladder of a service's settings -------------------------------------------------------------

AnyTier = Tier | VideoTier


def parse_ladder(text: str) -> tuple[AnyTier, ...]:
    """Parse `name=WxH@Q,...` (JPEG) and `name=WxH@h264:RATE` (video) items; raise ValueError saying which
    item is wrong and why. JPEG tiers are ordered among themselves, video tiers among themselves."""
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError("empty tier ladder: expected name=WIDTHxHEIGHT@QUALITY[,...]")
    if len(items) > MAX_TIERS:
        raise ValueError(f"{len(items)} tiers, at most {MAX_TIERS}")
    tiers: list[AnyTier] = []
    prev: Tier | None = None
    for item in items:
        if is_video_spec(item):
            video = parse_video_tier(item)
            if any(t.name == video.name for t in tiers):
                raise ValueError(f"tier name {video.name!r} appears twice")
            tiers.append(video)
            continue
        match = _TIER_RE.match(item)
        if not match:
            raise ValueError(f"tier {item.strip()!r} is not name=WIDTHxHEIGHT@QUALITY (e.g. high=1280x720@85)")
        name, w, h, q = match["name"], int(match["w"]), int(match["h"]), int(match["q"])
        if not C.TIER_NAME_RE.match(name):
            raise ValueError(f"tier name {name!r} must match {C.TIER_NAME_RE.pattern}")
        if not (MIN_SIDE <= w <= JPEG_MAX_WIDTH and MIN_SIDE <= h <= JPEG_MAX_HEIGHT):
            raise ValueError(f"tier {name!r}: size {w}x{h} outside "
                             f"{MIN_SIDE}x{MIN_SIDE}..{JPEG_MAX_WIDTH}x{JPEG_MAX_HEIGHT}")
        if not 1 <= q <= 100:
            raise ValueError(f"tier {name!r}: JPEG quality {q} outside 1..100")
        if any(t.name == name for t in tiers):
            raise ValueError(f"tier name {name!r} appears twice")
        if prev is not None and (w * h > prev.width * prev.height
                                 or (w * h == prev.width * prev.height and q >= prev.quality)):
            raise ValueError(f"tier {name!r} ({w}x{h}@{q}) is not below {prev.name!r} "
                             f"({prev.width}x{prev.height}@{prev.quality}): list tiers best first")
        prev = Tier(name, w, h, q)
        tiers.append(prev)
    check_video_order([t for t in tiers if isinstance(t, VideoTier)])
    return tuple(tiers)


# --- the announced ladder: what the edge and the viewers see ------------------------------------------

def announced_tiers(raw: Any) -> tuple[TierInfo, ...]:
    """The tiers of a stream meta's `tiers` list, tolerant of missing optional fields (skips nameless items)."""
    out = []
    for t in raw if isinstance(raw, list) else ():
        if isinstance(t, dict) and isinstance(t.get("name"), str):
            out.append(TierInfo(name=t["name"], width=int(t.get("width", 0) or 0),
                                height=int(t.get("height", 0) or 0), quality=int(t.get("quality", 0) or 0),
                                codec=str(t.get("codec", "jpeg")), bitrate=int(t.get("bitrate", 0) or 0),
                                crf=int(t.get("crf", 0) or 0)))
    return tuple(out)


def codec_family(codec: str) -> str:
    """The codec family a viewer names in its hello `codecs` list, for a tier's `codec` field.

    "avc1.42C01F" -> "h264"; "jpeg" -> "jpeg"; other strings are returned lower-cased.
    """
    lowered = codec.lower()
    if lowered.startswith(("avc1.", "avc3.")) or lowered == "h264":
        return "h264"
    return lowered


def is_video(tier: TierInfo) -> bool:
    return codec_family(tier.codec) != "jpeg"


def jpeg_tiers(tiers: tuple[TierInfo, ...]) -> tuple[TierInfo, ...]:
    return tuple(t for t in tiers if not is_video(t))


def tiers_for(tiers: tuple[TierInfo, ...], codecs: tuple[str, ...] | None) -> tuple[TierInfo, ...]:
    """The tiers a viewer may be fed: JPEG always, a video tier when its hello names the codec family.

    Viewers that sent no hello (legacy clients) get JPEG only. The hello still
    lists the whole ladder, so the header's tier index names a position in it.
    """
    offered = {c.lower() for c in codecs or ()}
    return tuple(t for t in tiers if not is_video(t) or codec_family(t.codec) in offered)


def auto_rungs(tiers: tuple[TierInfo, ...]) -> tuple[int, ...]:
    """The tiers automatic choice moves along, best first, as indices into `tiers`.

    Among JPEG tiers alone, all of them. With video tiers present, the video
    tiers and then the lightest JPEG tier only: every heavier JPEG tier costs
    several times the bytes of a video tier of the same picture, but a JPEG tier
    may drop any frame, so it is the last resort of a link too slow for the
    lightest video tier at the source's rate. A pin may still name any tier.
    """
    video = [i for i, t in enumerate(tiers) if is_video(t)]
    jpeg = [i for i, t in enumerate(tiers) if not is_video(t)]
    if not video:
        return tuple(range(len(tiers)))
    return tuple(sorted((*video, *jpeg[-1:])))  # ladder order: list video tiers first


def estimate_frame_sizes(tiers: Sequence[TierInfo], measured: Sequence[float | None],
                         source_fps: float) -> list[float | None]:
    """Mean frame size per tier: `measured` where known, else a video tier's bitrate over the source
    rate, else scaled by area from a measured tier of the same codec family (None: no estimate)."""
    sizes: list[float | None] = []
    for tier, size in zip(tiers, measured, strict=True):
        if size is not None:
            sizes.append(size)
        elif tier.bitrate and source_fps > 0:
            sizes.append(tier.bitrate / 8 / source_fps)
        else:
            sizes.append(None)
    for i, size in enumerate(sizes):
        tier = tiers[i]
        if size is not None or not tier.width or not tier.height:
            continue
        # scale from a measured tier of the same codec family (H.264 frames are far smaller than JPEG)
        same = [(j, s) for j, s in enumerate(sizes) if s is not None and is_video(tiers[j]) == is_video(tier)]
        if same:
            j, s = same[0]
            sizes[i] = s * tier.width * tier.height / max(1, tiers[j].width * tiers[j].height)
    return sizes
