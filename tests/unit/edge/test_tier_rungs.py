"""Which tiers a viewer may get, and which of them automatic choice moves along."""

from __future__ import annotations

from framecast.ladder import auto_rungs, tiers_for
from framecast.protocol import TierInfo

VHIGH = TierInfo("video-high", 1280, 720, 0, "avc1.42C01F")
VLOW = TierInfo("video-low", 640, 360, 0, "avc1.42C01E")
HIGH = TierInfo("high", 1280, 720, 85)
MID = TierInfo("mid", 1280, 720, 70)
LOW = TierInfo("low", 640, 360, 60)
LADDER = (VHIGH, VLOW, HIGH, MID, LOW)


def test_a_jpeg_viewer_moves_along_every_jpeg_tier() -> None:
    tiers = tiers_for(LADDER, ("jpeg",))
    assert tiers == (HIGH, MID, LOW)
    assert auto_rungs(tiers) == (0, 1, 2)


def test_a_legacy_viewer_without_hello_gets_jpeg_only() -> None:
    assert tiers_for(LADDER, None) == (HIGH, MID, LOW)


def test_a_video_viewer_moves_along_the_video_tiers_then_the_lightest_jpeg_tier() -> None:
    tiers = tiers_for(LADDER, ("h264", "jpeg"))
    assert tiers == LADDER
    assert auto_rungs(tiers) == (0, 1, 4)


def test_video_tiers_listed_after_jpeg_ones_still_come_first_in_auto() -> None:
    tiers = (HIGH, VHIGH, LOW)
    assert auto_rungs(tiers) == (1, 2)


def test_a_video_only_ladder() -> None:
    assert auto_rungs((VHIGH, VLOW)) == (0, 1)
