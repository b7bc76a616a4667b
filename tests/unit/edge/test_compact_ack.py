"""The edge's fast ack reader (`wsconn.compact_ack`): exactly the frames the full parser reads as a compact ack.

It runs interpreted under `make test` and compiled under `make test-compiled` (the two take different paths).
"""

from __future__ import annotations

import random

import pytest

from framecast.edge import wsconn


def masked(payload: bytes, mask: bytes, first: int = 0x81) -> bytes:
    """A client's text frame: masked, length under 126."""
    assert len(payload) < 126
    return bytes((first, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def reference(payload: bytes) -> int:
    """What the full path reads: an ack in the compact form of 1 to 18 ASCII digits."""
    p, n = wsconn.ACK_PREFIX, len(wsconn.ACK_PREFIX)
    digits = payload[n:-1]
    ok = payload.startswith(p) and payload.endswith(b"}") and 1 <= len(digits) <= 18 and digits.isdigit()
    return int(digits) if ok else -1


@pytest.mark.parametrize("frame_id", [0, 7, 1234567, 2**53, 10**18 - 1])
def test_reads_the_compact_form_under_any_mask(frame_id: int) -> None:
    rng = random.Random(frame_id)
    for _ in range(50):
        mask = rng.randbytes(4)
        assert wsconn.compact_ack(masked(b'{"type":"ack","id":%d}' % frame_id, mask)) == frame_id


@pytest.mark.parametrize("payload", [
    b'{"type":"ack","id":}',  # no digits
    b'{"type":"ack","id":12',  # no closing brace
    b'{"type":"ack","id":1 }',
    b'{"type":"ack","id":-1}',
    b'{"type":"ack","id":1.5}',
    b'{"type":"ack","id":\xd9\xa3}',  # a non-ASCII digit
    b'{"type":"ack", "id":12}',  # valid JSON, not the compact form: the full parser's
    b'{"type":"set","id":12}',
    b'{"type":"ack","id":1234567890123456789}',  # 19 digits: the full parser's
    b"",
])
def test_anything_else_is_left_to_the_full_parser(payload: bytes) -> None:
    assert wsconn.compact_ack(masked(payload, b"\x01\x02\x03\x04")) == -1


def test_only_one_whole_masked_final_text_frame_qualifies() -> None:
    payload, mask = b'{"type":"ack","id":42}', b"\x9a\x00\xff\x10"
    good = masked(payload, mask)
    assert wsconn.compact_ack(good) == 42
    assert wsconn.compact_ack(masked(payload, mask, first=0x01)) == -1  # not final (a fragment)
    assert wsconn.compact_ack(masked(payload, mask, first=0x82)) == -1  # binary
    assert wsconn.compact_ack(masked(payload, mask, first=0xC1)) == -1  # a reserved bit
    assert wsconn.compact_ack(bytes((0x81, len(payload))) + payload) == -1  # unmasked
    assert wsconn.compact_ack(good[:-1]) == -1  # cut short
    assert wsconn.compact_ack(good + good) == -1  # two frames in one read: the parser handles batches


def test_agrees_with_the_full_path_on_random_payloads() -> None:
    rng = random.Random(17)
    alphabet = b'0123456789}{"ackidtype:,x -'
    for _ in range(3000):
        tail = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 22)))
        payload = (wsconn.ACK_PREFIX if rng.random() < 0.8 else b"") + tail
        if len(payload) < 126:
            assert wsconn.compact_ack(masked(payload, rng.randbytes(4))) == reference(payload), payload
