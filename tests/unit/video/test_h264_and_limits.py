"""Annex B helpers (pure bytes) and the keyframe request rate limiter."""

from __future__ import annotations

import pytest

from framecast.bus.signals import RequestLimiter, parse_request_value
from framecast.codecs import h264

SPS = bytes.fromhex("6742c01fda014016")  # as libx264 ultrafast writes it for 1280x720 (truncated)
PPS = bytes.fromhex("68ce0f2c80")
IDR = bytes.fromhex("6588840021")
P_SLICE = bytes.fromhex("419a2072c0")


def annexb(*units: bytes, long_codes: bool = True) -> bytes:
    code = b"\x00\x00\x00\x01" if long_codes else b"\x00\x00\x01"
    return b"".join(code + u for u in units)


def test_split_and_types_with_both_start_code_lengths() -> None:
    au = annexb(SPS, PPS) + annexb(IDR, long_codes=False)
    assert h264.split_nal_units(au) == [SPS, PPS, IDR]
    assert h264.nal_types(au) == [h264.NAL_SPS, h264.NAL_PPS, h264.NAL_IDR]
    assert h264.is_idr(au) and {h264.NAL_SPS, h264.NAL_PPS} <= set(h264.nal_types(au))
    p = annexb(P_SLICE)
    assert not h264.is_idr(p) and not {h264.NAL_SPS, h264.NAL_PPS} & set(h264.nal_types(p))
    assert h264.split_nal_units(b"") == [] and h264.split_nal_units(b"\x01\x02") == []


def test_codec_string_from_sps() -> None:
    assert h264.codec_string_from_sps(SPS) == "avc1.42C01F"
    assert h264.codec_string(annexb(SPS, PPS, IDR)) == "avc1.42C01F"
    assert h264.codec_string(annexb(P_SLICE)) is None
    assert h264.codec_string_from_sps(bytes.fromhex("67640028ac")) == "avc1.640028"  # High, level 4.0
    with pytest.raises(ValueError, match=r"not an H\.264 SPS"):
        h264.codec_string_from_sps(PPS)
    with pytest.raises(ValueError):
        h264.codec_string_from_sps(b"\x67\x42")


def test_request_limiter_one_per_interval_per_key() -> None:
    lim = RequestLimiter(0.25)
    assert lim.allow("a", 10.0)
    assert not lim.allow("a", 10.1)
    assert lim.allow("b", 10.1)  # other tiers are independent
    assert lim.allow("a", 10.25)
    assert (lim.allowed, lim.limited) == (3, 1)


def test_parse_request_value() -> None:
    assert parse_request_value(b"1700000000000000 edge-1") == 1_700_000_000_000_000
    assert parse_request_value("42 x") == 42
    assert parse_request_value(b"garbage") is None
    assert parse_request_value(None) is None
