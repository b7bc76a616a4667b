"""The wire protocol: golden vector, round trips and every malformed-input class."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from framecast import constants as C
from framecast.protocol import (
    Ack,
    ClientHello,
    ClientStats,
    ControlMessage,
    ErrorMessage,
    FrameHeader,
    KeyframeNeeded,
    ProtocolError,
    ServerHello,
    SetPreferences,
    Status,
    TierChanged,
    TierInfo,
    decode_frame,
    decode_header,
    encode_control,
    encode_frame,
    parse_server_message,
    parse_viewer_message,
)

GOLDEN = Path(__file__).parents[1] / "data" / "frame_v1.bin"
VECTOR_HEADER = FrameHeader(frame_id=42, capture_us=1_700_000_000_123_456, width=1280, height=720, tier=1,
                            codec=C.CODEC_JPEG, quality=70, flags=C.FLAG_KEYFRAME, publish_us=1_700_000_000_125_000)
VECTOR_PAYLOAD = bytes.fromhex("ffd8ffd9")


def test_golden_vector_byte_for_byte() -> None:
    assert encode_frame(VECTOR_HEADER, VECTOR_PAYLOAD) == GOLDEN.read_bytes()


def test_golden_vector_matches_docs() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    block = doc.split("### Test vector", 1)[1].split("```", 2)[1]
    dumped = bytes.fromhex("".join(line[6:] for line in block.strip().splitlines()))
    assert dumped == GOLDEN.read_bytes()


def test_decode_golden() -> None:
    frame = decode_frame(GOLDEN.read_bytes())
    assert frame.payload == VECTOR_PAYLOAD
    assert frame.header == FrameHeader(**{**_fields(VECTOR_HEADER), "payload_len": 4})
    assert frame.header.keyframe and frame.header.codec_name == "jpeg"


def _fields(h: FrameHeader) -> dict[str, int]:
    return {k: getattr(h, k) for k in FrameHeader.__slots__}  # type: ignore[attr-defined]


@pytest.mark.parametrize("frame_id", [0, 1, 2**32, 2**64 - 1])
def test_round_trip_extremes(frame_id: int) -> None:
    header = FrameHeader(frame_id=frame_id, capture_us=2**63 + 5, width=65535, height=1, tier=255, quality=100)
    payload = bytes(range(256)) * 3
    frame = decode_frame(encode_frame(header, payload))
    assert frame.header.frame_id == frame_id and frame.header.capture_us == 2**63 + 5
    assert frame.payload == payload and frame.header.payload_len == len(payload)


def test_capture_time_is_exact_integer_microseconds() -> None:
    t = 1_767_225_600_000_001  # 2026 in µs: a float32 could not hold it
    assert decode_frame(encode_frame(FrameHeader(1, t, 2, 2), b"x")).header.capture_us == t


def _good() -> bytearray:
    return bytearray(GOLDEN.read_bytes())


def _patched(offset: int, value: bytes) -> bytes:
    data = _good()
    data[offset:offset + len(value)] = value
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "too short"),
        (GOLDEN.read_bytes()[:39], "too short"),
        (_patched(0, b"XX"), "bad magic"),
        (_patched(2, b"\x02"), "version"),
        (_patched(3, b"\x10"), "header length"),
        (_patched(4, b"\x09"), "codec"),
        (_patched(8, b"\x00\x00"), "frame size"),
        (_patched(7, b"\xff"), "quality"),
        (GOLDEN.read_bytes() + b"\x00", "length mismatch"),
        (GOLDEN.read_bytes()[:-1], "length mismatch"),
        (_patched(12, struct.pack("<I", 2**32 - 1)), "length mismatch"),
    ],
    ids=["empty", "short-header", "bad-magic", "bad-version", "short-header-len", "bad-codec", "zero-size",
         "bad-quality", "trailing-byte", "truncated-payload", "huge-length"],
)
def test_malformed_frames_raise_protocol_error(data: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        decode_frame(data)


def test_decode_header_accepts_memoryview() -> None:
    assert decode_header(memoryview(GOLDEN.read_bytes())).frame_id == 42


@pytest.mark.parametrize("bad", [
    FrameHeader(frame_id=-1, capture_us=0, width=1, height=1),
    FrameHeader(frame_id=0, capture_us=2**64, width=1, height=1),
    FrameHeader(frame_id=0, capture_us=0, width=0, height=1),
    FrameHeader(frame_id=0, capture_us=0, width=1, height=1, quality=101),
])
def test_encode_rejects_out_of_range(bad: FrameHeader) -> None:
    with pytest.raises(ProtocolError):
        encode_frame(bad, b"x")


VIEWER_MESSAGES: list[ControlMessage] = [
    Ack(7),
    ClientHello(client_id="cli-1", tier="auto", max_fps=15.0, codecs=("jpeg", "h264"), token="abc"),
    ClientHello(),
    SetPreferences(tier="low"),
    SetPreferences(max_fps=5.0),
    SetPreferences(tier="auto", max_fps=0.0),
    ClientStats(fps=29.5, latency_ms=41.0, dropped=3),
    KeyframeNeeded(reason="decoder error"),
    KeyframeNeeded(),
]
SERVER_MESSAGES: list[ControlMessage] = [
    ServerHello(stream="demo", tiers=(TierInfo("high", 1280, 720, 85), TierInfo("low", 640, 360, 60)), tier="high",
                server="edge-a", fps=30.0),
    ServerHello(stream="demo", tiers=(TierInfo("video-high", 1280, 720, 0, "avc1.42C01F", 2_500_000),
                                      TierInfo("video-q", 640, 360, 0, "avc1.42C01E"), TierInfo("low", 640, 360, 60)),
                tier="video-high", server="edge-a", fps=30.0),
    Status(state="stalled", detail="no heartbeat for 2.0 s"),
    TierChanged(tier="low", reason="rate"),
    ErrorMessage(code=C.CLOSE_UNKNOWN_STREAM, message="unknown stream 'x'"),
]


@pytest.mark.parametrize("msg", VIEWER_MESSAGES, ids=lambda m: type(m).__name__)
def test_viewer_messages_round_trip(msg: ControlMessage) -> None:
    assert parse_viewer_message(encode_control(msg)) == msg


@pytest.mark.parametrize("msg", SERVER_MESSAGES, ids=lambda m: type(m).__name__)
def test_server_messages_round_trip(msg: ControlMessage) -> None:
    assert parse_server_message(encode_control(msg)) == msg


def test_ack_wire_form() -> None:
    assert encode_control(Ack(42)) == '{"type":"ack","id":42}'


@pytest.mark.parametrize("text", [
    "", "not json", "[]", "42", '"hello"', "{}", '{"type": 5}', '{"type":"nope"}',
    '{"type":"ack"}', '{"type":"ack","id":-1}', '{"type":"ack","id":"7"}', '{"type":"ack","id":true}',
    '{"type":"ack","id":1.5}', '{"type":"hello","tier":"NOT A TIER"}', '{"type":"hello","codecs":"jpeg"}',
    '{"type":"set","max_fps":-3}', '{"type":"set","max_fps":"fast"}', '{"type":"stats","fps":null}',
    '{"type":"keyframe","reason":7}',
    "[" * 10000, '{"type":"ack","id":1,"pad":"' + "x" * 5000 + '"}', '{"type":"ack","id":' + "9" * 30 + "}",
])
def test_bad_viewer_messages_raise_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_viewer_message(text)


@pytest.mark.parametrize("text", ['{"type":"hello"}', '{"type":"status","state":"weird"}', '{"type":"error"}',
                                  '{"type":"hello","tiers":[1],"stream":"d","tier":"h","protocol":1}'])
def test_bad_server_messages_raise_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_server_message(text)


def test_hello_is_compact_json() -> None:
    text = encode_control(SERVER_MESSAGES[0])
    assert json.loads(text)["tiers"][1] == {"name": "low", "width": 640, "height": 360, "quality": 60,
                                            "codec": "jpeg"}


def test_tier_bitrate_travels_only_on_video_tiers_that_have_one() -> None:
    tiers = json.loads(encode_control(SERVER_MESSAGES[1]))["tiers"]
    assert tiers[0]["bitrate"] == 2_500_000 and "bitrate" not in tiers[1] and "bitrate" not in tiers[2]
