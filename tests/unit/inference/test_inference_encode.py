"""Both JPEG encoders through the same tests: every tier decodes to its advertised size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framecast.codecs.jpeg import ENCODERS, make_encoder
from framecast.inference.encode import TierEncoder
from framecast.inference.sources import SyntheticSource
from framecast.ladder import parse_ladder

LADDER = parse_ladder("high=1280x720@85,mid=1280x720@70,low=640x360@60,tiny=160x160@40")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return SyntheticSource(1280, 720, 30).read(7).image


@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("threads", [1, 3])
def test_tiers_decode_to_their_size(name: str, threads: int, frame: np.ndarray) -> None:
    encoder = TierEncoder(make_encoder(name), LADDER, 1280, 720, threads)
    try:
        out = encoder.encode(frame, [0, 1, 2, 3])
    finally:
        encoder.close()
    assert [t.index for t in out] == [0, 1, 2, 3]
    for t in out:
        decoded = cv2.imdecode(np.frombuffer(t.payload, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        assert (decoded.shape[1], decoded.shape[0]) == (t.width, t.height) == t.tier.fit(1280, 720)
    assert [(t.width, t.height) for t in out] == [(1280, 720), (1280, 720), (640, 360), (160, 90)]
    sizes = [len(t.payload) for t in out]
    assert sizes[0] > sizes[1] > sizes[2] > sizes[3]  # lower quality and size, fewer bytes


@pytest.mark.parametrize("name", ENCODERS)
def test_colours_survive_the_round_trip(name: str) -> None:
    """RGB in, RGB out: a red frame must not come back blue (OpenCV wants BGR)."""
    red = np.zeros((90, 160, 3), np.uint8)
    red[..., 0] = 230
    payload = make_encoder(name).encode(red, 90)
    bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None
    b, g, r = (float(c) for c in bgr.reshape(-1, 3).mean(axis=0))
    assert r > 200 and b < 30 and g < 30


@pytest.mark.parametrize("name", ENCODERS)
def test_subset_of_tiers(name: str, frame: np.ndarray) -> None:
    encoder = TierEncoder(make_encoder(name), LADDER, 1280, 720)
    try:
        out = encoder.encode(frame, [2])
    finally:
        encoder.close()
    assert [(t.tier.name, t.width, t.height, t.tier.quality) for t in out] == [("low", 640, 360, 60)]


def test_unknown_encoder() -> None:
    with pytest.raises(ValueError, match="unknown encoder"):
        make_encoder("gif")
