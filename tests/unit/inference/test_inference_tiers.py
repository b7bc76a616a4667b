"""The tier ladder: parsing, validation, sizes."""

from __future__ import annotations

import pytest

from framecast.ladder import DEFAULT_LADDER, Tier, VideoTier, parse_ladder


def test_default_ladder() -> None:
    """H.264 tiers first (viewers that decode them), then the JPEG tiers every viewer can decode."""
    ladder = parse_ladder(DEFAULT_LADDER)
    video, jpeg = ladder[:2], ladder[2:]
    assert all(isinstance(t, VideoTier) for t in video)
    assert [(t.name, t.width, t.height, t.bitrate) for t in video if isinstance(t, VideoTier)] == [
        ("video-high", 1280, 720, 2_500_000), ("video-low", 640, 360, 800_000)]
    assert jpeg == (Tier("high", 1280, 720, 85), Tier("mid", 1280, 720, 70), Tier("low", 640, 360, 60))


def test_spaces_are_tolerated() -> None:
    assert parse_ladder(" a = 640x360 @ 80 , b=320x180@50 ,") == (Tier("a", 640, 360, 80), Tier("b", 320, 180, 50))


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("high=1280x720", "name=WIDTHxHEIGHT@QUALITY"),
    ("high:1280x720@85", "name=WIDTHxHEIGHT@QUALITY"),
    ("High=1280x720@85", "tier name"),
    ("high=1280x720@0", "quality"),
    ("high=1280x720@101", "quality"),
    ("high=8x8@80", "outside"),
    ("high=99999x720@80", "outside"),
    ("a=640x360@80,a=320x180@50", "twice"),
    ("low=640x360@60,high=1280x720@85", "best first"),
    ("a=640x360@60,b=640x360@60", "best first"),
    (",".join(f"t{i}=640x360@{90 - i}" for i in range(9)), "at most"),
])
def test_bad_ladders_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ladder(text)


def test_fit_keeps_aspect_and_never_upscales() -> None:
    tier = Tier("low", 640, 360, 60)
    assert tier.fit(1280, 720) == (640, 360)
    assert tier.fit(320, 180) == (320, 180)
    assert tier.fit(1000, 1000) == (360, 360)
    assert tier.describe(1280, 720).to_json() == {"name": "low", "width": 640, "height": 360, "quality": 60,
                                                  "codec": "jpeg"}
