"""H.264 Annex B bitstream helpers: NAL unit splitting, IDR detection, the WebCodecs codec string.

Pure functions over bytes, shared by the encoder, the decoder and the tests.
An access unit is one frame's NAL units, each behind a 3- or 4-byte start code
(00 00 01 / 00 00 00 01); keyframes carry SPS (7) and PPS (8) in front of the
IDR slice (5), so a decoder can start at any keyframe.
"""

from __future__ import annotations

from typing import Final

NAL_SLICE: Final = 1
NAL_IDR: Final = 5
NAL_SEI: Final = 6
NAL_SPS: Final = 7
NAL_PPS: Final = 8
NAL_AUD: Final = 9


def split_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte string, start codes removed (trailing zero bytes too)."""
    units: list[bytes] = []
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < n:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = n if nxt < 0 else nxt
        unit = data[start:end].rstrip(b"\x00") if nxt >= 0 else data[start:end]
        if unit:
            units.append(unit)
        i = nxt
    return units


def nal_types(data: bytes) -> list[int]:
    """The nal_unit_type of each NAL unit of an Annex B access unit, in order."""
    return [unit[0] & 0x1F for unit in split_nal_units(data)]


def is_idr(data: bytes) -> bool:
    """Whether an access unit holds an IDR slice (a point where a decoder can start)."""
    return NAL_IDR in nal_types(data)


def _unescape(rbsp: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    return rbsp.replace(b"\x00\x00\x03", b"\x00\x00")


def find_sps(data: bytes) -> bytes | None:
    """The first SPS NAL unit (with its one-byte NAL header) of an Annex B string, or None."""
    for unit in split_nal_units(data):
        if unit[0] & 0x1F == NAL_SPS:
            return unit
    return None


def codec_string_from_sps(sps: bytes) -> str:
    """RFC 6381 / WebCodecs codec string `avc1.PPCCLL` from an SPS NAL unit.

    PP = profile_idc, CC = the constraint-set flags byte, LL = level_idc, in hex;
    e.g. 42C01F = Constrained Baseline, level 3.1.
    """
    body = _unescape(sps[1:6])[:3]
    if not sps or sps[0] & 0x1F != NAL_SPS or len(body) < 3:
        raise ValueError("not an H.264 SPS NAL unit")
    profile, constraints, level = body[0], body[1], body[2]
    return f"avc1.{profile:02X}{constraints:02X}{level:02X}"


def codec_string(data: bytes) -> str | None:
    """The codec string of the SPS carried by an access unit, or None if it has none."""
    sps = find_sps(data)
    return codec_string_from_sps(sps) if sps is not None else None
