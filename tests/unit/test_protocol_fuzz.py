"""Property tests: decoders only ever raise ProtocolError, whatever bytes arrive."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from framecast.protocol import (
    FrameHeader,
    ProtocolError,
    decode_frame,
    encode_frame,
    parse_server_message,
    parse_viewer_message,
)

GOLDEN = (Path(__file__).parents[1] / "data" / "frame_v1.bin").read_bytes()


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        decode_frame(data)
    except ProtocolError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _decode_or_protocol_error(data)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOLDEN) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(GOLDEN)))
def test_mutated_golden(mutations: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(GOLDEN)
    for pos, value in mutations:
        data[pos] = value
    _decode_or_protocol_error(bytes(data[:cut]))
    _decode_or_protocol_error(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(1, 65535), st.integers(1, 65535),
       st.integers(0, 255), st.integers(0, 100), st.binary(max_size=64))
def test_round_trip(frame_id: int, capture: int, w: int, h: int, tier: int, q: int, payload: bytes) -> None:
    header = FrameHeader(frame_id=frame_id, capture_us=capture, width=w, height=h, tier=tier, quality=q)
    frame = decode_frame(encode_frame(header, payload))
    assert (frame.header.frame_id, frame.header.capture_us, frame.payload) == (frame_id, capture, payload)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 st.builds(lambda d: __import__("json").dumps(d), JSONISH),
                 st.builds(lambda t, d: __import__("json").dumps({"type": t, **d}),
                           st.sampled_from(["ack", "hello", "set", "stats", "status", "tier", "error", "x"]),
                           st.dictionaries(st.sampled_from(["id", "tier", "max_fps", "codecs", "fps", "state",
                                                            "tiers", "code", "stream", "protocol", "token"]),
                                           JSONISH, max_size=5))))
def test_control_parsers(text: str | bytes) -> None:
    for parse in (parse_viewer_message, parse_server_message):
        try:
            parse(text)
        except ProtocolError:
            pass
