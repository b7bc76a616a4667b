"""A bitstream-level check for H.264 viewers in tests: does every picture have its reference?

The frame_num of each picture's first slice header must follow the previous reference picture's
(H.264 7.4.3; framecast's encoders allow no gaps in frame_num). Frame ids are not enough: they also
skip where the source dropped frames before encoding, which leaves the encoder's chain intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from framecast import constants as C
from framecast.codecs.h264 import NAL_IDR, NAL_SLICE, NAL_SPS, split_nal_units
from framecast.protocol import FrameHeader, encode_frame

if TYPE_CHECKING:  # PyAV only where video is encoded
    from framecast.codecs.h264_encoder import EncodedVideoFrame, VideoTierEncoder

HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


class Bits:
    def __init__(self, rbsp: bytes) -> None:
        self.data, self.pos = rbsp, 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def rbsp(nal: bytes) -> bytes:
    """The NAL unit's payload without its header byte and emulation-prevention bytes."""
    out, zeros = bytearray(), 0
    for b in nal[1:]:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


@dataclass(frozen=True)
class Sps:
    log2_max_frame_num: int
    separate_colour_plane: bool


def parse_sps(nal: bytes) -> Sps:
    r = Bits(rbsp(nal))
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    separate = False
    if profile in HIGH_PROFILES:
        chroma = r.ue()
        if chroma == 3:
            separate = bool(r.u(1))
        r.ue(), r.ue(), r.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        if r.u(1):  # seq_scaling_matrix_present: skip the lists
            for i in range(12 if chroma == 3 else 8):
                if r.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    return Sps(r.ue() + 4, separate)


@dataclass
class ChainCheck:
    """Feeds access units in arrival order; counts pictures whose reference picture is not the one before."""

    sps: Sps | None = None
    prev_ref: int | None = None  # frame_num of the last reference picture, None before the first IDR
    pictures: int = 0
    broken: list[tuple[int, str]] = field(default_factory=list)
    history: list[tuple[int, int]] = field(default_factory=list)  # (frame id, frame_num) in arrival order

    def add(self, frame_id: int, payload: bytes) -> None:
        for nal in split_nal_units(payload):
            if nal[0] & 0x1F == NAL_SPS:
                self.sps = parse_sps(nal)
        slices = [n for n in split_nal_units(payload) if n[0] & 0x1F in (NAL_SLICE, NAL_IDR)]
        assert slices and self.sps is not None, f"frame {frame_id}: no slice, or no SPS seen yet"
        nal = slices[0]
        r = Bits(rbsp(nal))
        r.ue(), r.ue(), r.ue()  # first_mb_in_slice, slice_type, pic_parameter_set_id
        if self.sps.separate_colour_plane:
            r.u(2)
        frame_num = r.u(self.sps.log2_max_frame_num)
        is_ref = (nal[0] >> 5) & 3 != 0
        self.history.append((frame_id, frame_num))
        self.pictures += 1
        if nal[0] & 0x1F == NAL_IDR:
            if frame_num != 0:
                self.broken.append((frame_id, f"IDR with frame_num {frame_num}"))
        elif self.prev_ref is None:
            self.broken.append((frame_id, "P picture before any IDR"))
        elif frame_num != (self.prev_ref + 1) % (1 << self.sps.log2_max_frame_num):
            self.broken.append((frame_id, f"frame_num {frame_num} after reference {self.prev_ref} "
                                          f"(id, frame_num before: {self.history[-4:-1]})"))
        if is_ref:
            self.prev_ref = frame_num


def video_message(venc: VideoTierEncoder, frame: EncodedVideoFrame, *, frame_id: int, capture_us: int,
                  publish_us: int = 0) -> bytes:
    """The wire message the inference service publishes for a video frame (codec H.264, quality 0, keyframe flag)."""
    assert venc.encoder is not None
    header = FrameHeader(frame_id=frame_id, capture_us=capture_us, width=venc.encoder.width,
                         height=venc.encoder.height, tier=venc.tier_index, codec=C.CODEC_H264, quality=0,
                         flags=C.FLAG_KEYFRAME if frame.keyframe else 0, publish_us=publish_us)
    return encode_frame(header, frame.data)
