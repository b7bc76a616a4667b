"""Video tier specs in the ladder string: parsing, errors that name the problem, sizes, ordering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framecast.ladder import (
    DEFAULT_CRF,
    VideoTier,
    check_video_order,
    codec_family,
    is_video_spec,
    parse_bitrate,
    parse_video_tier,
)


@pytest.mark.parametrize(("spec", "expected"), [
    ("video-high=1280x720@h264:2500k", VideoTier("video-high", 1280, 720, "h264", 2_500_000, None)),
    ("v=640x360@h264:1.2M", VideoTier("v", 640, 360, "h264", 1_200_000, None)),
    ("v=640x360@H264:800000", VideoTier("v", 640, 360, "h264", 800_000, None)),
    ("video-q=1280x720@h264:crf23", VideoTier("video-q", 1280, 720, "h264", None, 23)),
    (" v = 320 x 240 @ h264 : CRF30 ", VideoTier("v", 320, 240, "h264", None, 30)),
    ("v=640x360@h264", VideoTier("v", 640, 360, "h264", None, DEFAULT_CRF)),
])
def test_parses_bitrate_and_crf_forms(spec: str, expected: VideoTier) -> None:
    assert parse_video_tier(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("video-high=1280x720@vp9:2500k", "unknown video codec 'vp9'"),
    ("Video=1280x720@h264:2500k", "tier name 'Video' must match"),
    ("v=1280720@h264:2500k", "size '1280720' is not WIDTHxHEIGHT"),
    ("v=8x8@h264:2500k", "size 8x8 outside"),
    ("v=8192x720@h264:2500k", "size 8192x720 outside"),
    ("v=1280x720@h264:2500x", "bitrate '2500x' is not a number"),
    ("v=1280x720@h264:10", "bitrate 10 bit/s outside"),
    ("v=1280x720@h264:crf0", "CRF 0 outside 1..51"),
    ("v=1280x720@h264:crf52", "CRF 52 outside 1..51"),
    ("v=1280x720@h264:", "empty rate"),
    ("v1280x720@h264:2500k", "is not name=WIDTHxHEIGHT@h264"),
    ("v=1280x720@h264:2500k:extra", "bitrate '2500k:extra'"),
])
def test_bad_specs_raise_value_error_naming_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_video_tier(spec)


def test_dispatch_marker_tells_video_from_jpeg_items() -> None:
    assert is_video_spec("video-high=1280x720@h264:2500k")
    assert is_video_spec("v=640x360 @ h264")
    assert not is_video_spec("high=1280x720@85")
    assert not is_video_spec("low=640x360 @ 60")


def test_spec_round_trips() -> None:
    for spec in ("video-high=1280x720@h264:2500k", "video-q=640x360@h264:crf28"):
        assert parse_video_tier(spec).spec() == spec


@given(w=st.integers(16, 4096), h=st.integers(16, 2304), kbit=st.integers(50, 100_000))
def test_spec_round_trips_for_any_size_and_bitrate(w: int, h: int, kbit: int) -> None:
    tier = VideoTier("v", w, h, "h264", kbit * 1000, None)
    assert parse_video_tier(tier.spec()) == tier


@pytest.mark.parametrize(("text", "bps"), [("2500k", 2_500_000), ("2.5M", 2_500_000), ("1m", 1_000_000),
                                           ("64000", 64_000), ("0.5K", 500)])
def test_parse_bitrate(text: str, bps: int) -> None:
    assert parse_bitrate(text) == bps


def test_fit_scales_down_keeps_aspect_and_even_sides() -> None:
    tier = VideoTier("v", 640, 360)
    assert tier.fit(1280, 720) == (640, 360)
    assert tier.fit(320, 180) == (320, 180)  # never up
    assert tier.fit(1279, 721) == (638, 360)  # even sides for 4:2:0
    assert tier.fit(1920, 1080) == (640, 360)
    assert tier.fit(333, 201) == (332, 200)
    with pytest.raises(ValueError, match="too small"):
        tier.fit(1, 1)


def test_describe_carries_codec_string_and_rate() -> None:
    tier = parse_video_tier("video-high=1280x720@h264:2500k")
    assert tier.quality == 0
    assert tier.describe(1920, 1080, "avc1.42C01F").to_json() == {
        "name": "video-high", "width": 1280, "height": 720, "quality": 0, "codec": "avc1.42C01F",
        "bitrate": 2_500_000}
    assert parse_video_tier("q=640x360@h264:crf23").describe(640, 360, "avc1.42C01E").to_json()["crf"] == 23


@pytest.mark.parametrize(("codec", "family"), [("avc1.42C01F", "h264"), ("avc3.640028", "h264"), ("h264", "h264"),
                                               ("jpeg", "jpeg"), ("JPEG", "jpeg"), ("vp09.00.10.08", "vp09.00.10.08")])
def test_codec_family(codec: str, family: str) -> None:
    assert codec_family(codec) == family


def test_order_best_first() -> None:
    ladder = [parse_video_tier(s) for s in ("a=1280x720@h264:2500k", "b=1280x720@h264:1200k", "c=640x360@h264:crf23",
                                            "d=640x360@h264:crf30", "e=320x180@h264:2500k")]
    check_video_order(ladder)
    with pytest.raises(ValueError, match=r"'b' .* is not below 'a'"):
        check_video_order([parse_video_tier("a=1280x720@h264:1200k"), parse_video_tier("b=1280x720@h264:2500k")])
    with pytest.raises(ValueError, match="is not below"):
        check_video_order([parse_video_tier("a=640x360@h264:crf23"), parse_video_tier("b=1280x720@h264:crf23")])
    with pytest.raises(ValueError, match="one uses a bitrate and one a CRF"):
        check_video_order([parse_video_tier("a=640x360@h264:crf23"), parse_video_tier("b=640x360@h264:900k")])
