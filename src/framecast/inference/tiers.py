"""The quality ladder of a stream: named tiers, best first, each a size box and a JPEG quality or an H.264 rate.

`parse_ladder("high=1280x720@85,mid=1280x720@70,low=640x360@60")` gives the
tiers in ladder order; the position of a tier is the `tier` index in every
frame header. A tier's box is a maximum: a frame is scaled down to fit it with
its aspect ratio kept, never scaled up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from framecast import constants as C
from framecast.ladder import VideoTier, check_video_order, is_video_spec, parse_video_tier

# H.264 tiers first (what viewers with a decoder get: a sixth to a tenth of the bytes of a JPEG tier of the
# same picture), then the JPEG tiers every viewer can decode
DEFAULT_LADDER: Final = ("video-high=1280x720@h264:2500k,video-low=640x360@h264:800k,"
                         "high=1280x720@85,mid=1280x720@70,low=640x360@60")
MAX_TIERS: Final = 8
MIN_SIDE: Final = 16
MAX_WIDTH: Final = 7680
MAX_HEIGHT: Final = 4320

_TIER_RE = re.compile(r"^\s*(?P<name>[^=\s]+)\s*=\s*(?P<w>\d+)\s*x\s*(?P<h>\d+)\s*@\s*(?P<q>\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Tier:
    """One rung of the ladder: frames fit in `width` x `height`, encoded at JPEG `quality`."""

    name: str
    width: int
    height: int
    quality: int

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """Size of a `width` x `height` frame scaled down (never up) to fit this tier's box."""
        scale = min(self.width / width, self.height / height, 1.0)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def describe(self, frame_width: int, frame_height: int) -> dict[str, Any]:
        """The tier as announced in the stream meta (actual picture size of its frames)."""
        w, h = self.fit(frame_width, frame_height)
        return {"name": self.name, "width": w, "height": h, "quality": self.quality, "codec": "jpeg"}


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
        if not (MIN_SIDE <= w <= MAX_WIDTH and MIN_SIDE <= h <= MAX_HEIGHT):
            raise ValueError(f"tier {name!r}: size {w}x{h} outside {MIN_SIDE}x{MIN_SIDE}..{MAX_WIDTH}x{MAX_HEIGHT}")
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


def format_ladder(tiers: tuple[AnyTier, ...]) -> str:
    return ",".join(t.spec() if isinstance(t, VideoTier) else f"{t.name}={t.width}x{t.height}@{t.quality}"
                    for t in tiers)
