"""The announced ladder: meta tiers read back typed, and the frame-size estimates the tier choice uses."""

from __future__ import annotations

from framecast.bus import StreamInfo
from framecast.ladder import DEFAULT_LADDER, VideoTier, announced_tiers, estimate_frame_sizes, parse_ladder
from framecast.protocol import TierInfo

VHIGH = TierInfo("video-high", 1280, 720, 0, "avc1.42C01F", bitrate=2_400_000)
VLOW = TierInfo("video-low", 640, 360, 0, "avc1.42C01E", crf=23)
HIGH = TierInfo("high", 1280, 720, 85)
LOW = TierInfo("low", 640, 360, 60)


def test_stream_info_round_trips_typed_tiers() -> None:
    info = StreamInfo("demo", (VHIGH, VLOW, HIGH, LOW), 30.0, model="m")
    back = StreamInfo.from_json(info.to_json())
    assert back == info and all(isinstance(t, TierInfo) for t in back.tiers)


def test_announced_tiers_tolerate_missing_fields_and_skip_nameless_items() -> None:
    assert announced_tiers([{"name": "high"}, {"width": 3}, "x", {"name": "v", "codec": "avc1.42C01F",
                                                                  "bitrate": 800000}]) == (
        TierInfo("high", 0, 0, 0, "jpeg"), TierInfo("v", 0, 0, 0, "avc1.42C01F", bitrate=800_000))
    assert announced_tiers(None) == ()


def test_the_meta_of_a_parsed_ladder_names_every_tier_in_header_order() -> None:
    ladder = parse_ladder(DEFAULT_LADDER)
    described = [t.describe(1920, 1080, "avc1.42C01F") if isinstance(t, VideoTier) else t.describe(1920, 1080)
                 for t in ladder]
    assert [t.name for t in described] == ["video-high", "video-low", "high", "mid", "low"]
    assert [(t.width, t.height) for t in described] == [(1280, 720), (640, 360), (1280, 720), (1280, 720), (640, 360)]


def test_frame_sizes_measured_then_bitrate_then_scaled_within_the_codec_family() -> None:
    sizes = estimate_frame_sizes((VHIGH, VLOW, HIGH, LOW), [None, None, 60_000.0, None], 30.0)
    assert sizes[0] == 10_000.0  # 2.4 Mbit/s over 30 fps
    assert sizes[1] == 10_000.0 / 4  # no bitrate: scaled by area from the measured video tier, not from JPEG
    assert sizes[2] == 60_000.0
    assert sizes[3] == 15_000.0  # a quarter of the area of the measured JPEG tier


def test_frame_sizes_without_any_measure_of_a_family_stay_unknown() -> None:
    assert estimate_frame_sizes((HIGH, LOW), [None, None], 30.0) == [None, None]
    assert estimate_frame_sizes((VHIGH,), [None], 0.0) == [None]
