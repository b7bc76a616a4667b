"""A video frame displaced from the publish slot rides along with the frame that displaced it.

The newer frame's P-picture was encoded on top of the displaced one: dropping it (as a JPEG frame may
be dropped) would publish a picture without its reference.
"""

from __future__ import annotations

from framecast import constants as C
from framecast.inference.encode import EncodedTier
from framecast.inference.pipeline import LatestSlot
from framecast.inference.publish import MAX_CARRIED, EncodedFrame, carry_video
from framecast.ladder import parse_ladder

LADDER = parse_ladder("video=320x180@h264:300k,low=160x90@60")


def frame(frame_id: int) -> EncodedFrame:
    video = EncodedTier(0, LADDER[0], b"p%d" % frame_id, 320, 180, 0.001, codec=C.CODEC_H264, flags=0)
    jpeg = EncodedTier(1, LADDER[1], b"j%d" % frame_id, 160, 90, 0.001)
    return EncodedFrame(frame_id, frame_id * 1000, [video, jpeg])


def newer(a: EncodedFrame, b: EncodedFrame) -> bool:
    return a.frame_id > b.frame_id


def test_displaced_video_is_carried_in_order_and_only_jpeg_is_lost() -> None:
    slot: LatestSlot[EncodedFrame] = LatestSlot()
    assert slot.put_if_newer(frame(1), newer, carry_video) == (True, None)
    lost_jpeg = []
    for i in (2, 3):
        stored, lost = slot.put_if_newer(frame(i), newer, carry_video)
        assert stored and lost is not None and [t.codec for t in lost.tiers] == [C.CODEC_JPEG]
        lost_jpeg.append(lost.frame_id)
    got = slot.get(0)
    assert got is not None and got.frame_id == 3 and lost_jpeg == [1, 2]
    assert [(e.frame_id, [t.payload for t in e.tiers]) for e in got.earlier] == [(1, [b"p1"]), (2, [b"p2"])]


def test_past_the_cap_the_chain_is_given_up_and_reported_lost() -> None:
    slot: LatestSlot[EncodedFrame] = LatestSlot()
    slot.put_if_newer(frame(0), newer, carry_video)
    for i in range(1, MAX_CARRIED + 2):  # the last one would carry MAX_CARRIED + 1
        _, lost = slot.put_if_newer(frame(i), newer, carry_video)
    assert lost is not None and any(t.codec == C.CODEC_H264 for t in lost.tiers)  # the encoder makes an IDR
    got = slot.get(0)
    assert got is not None and got.earlier == []
    assert all(t.codec == C.CODEC_JPEG for t in got.tiers)  # no P-frame on a lost reference
