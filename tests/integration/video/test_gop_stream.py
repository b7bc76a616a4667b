"""The GOP rules on a real H.264 stream: what a viewer is sent always decodes, joins and stalls recover.

A fake clock drives a 30 fps source through a real encoder, the tier's GopCache and one
GopViewerQueue per viewer; a simulated link takes a given number of frames per tick; every
frame a viewer is sent goes through a real decoder, which must never see a broken reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from framecast.codecs.h264_decoder import H264Decoder
from framecast.codecs.h264_encoder import EncodedVideoFrame, H264Encoder
from framecast.edge.gop import GopCache, GopConfig, GopViewerQueue

from .conftest import Image

FRAME_US = 33_333


@dataclass
class Viewer:
    name: str
    link: Callable[[int], int]  # frames the link takes at tick i
    queue: GopViewerQueue[EncodedVideoFrame] = field(
        default_factory=lambda: GopViewerQueue(GopConfig(max_queue_frames=40, max_queue_delay_us=200_000,
                                                         keyframe_request_interval_us=300_000)))
    decoder: H264Decoder = field(default_factory=H264Decoder)
    shown: list[int] = field(default_factory=list)  # encoder frame index of each picture drawn
    blank: int = 0  # frames sent that drew nothing (must stay 0: we never send undecodable frames)

    def drain(self, tick: int) -> None:
        for _ in range(self.link(tick)):
            frame = self.queue.pop()
            if frame is None:
                return
            pic = self.decoder.decode(frame.data, frame.keyframe)
            if pic is None:
                self.blank += 1
            else:
                self.shown.append(frame.index)


def run(frames: list[Image], viewers: dict[int, Viewer], ticks: int,
        encoder: H264Encoder) -> tuple[list[EncodedVideoFrame], GopCache[EncodedVideoFrame], list[int]]:
    """`viewers` maps the tick at which each joins; returns the stream, the cache and the request ticks."""
    cache: GopCache[EncodedVideoFrame] = GopCache(max_frames=60, max_bytes=1 << 20)
    joined: list[Viewer] = []
    stream: list[EncodedVideoFrame] = []
    request_ticks: list[int] = []
    for tick in range(ticks):
        now_us = tick * FRAME_US
        if tick in viewers:
            v = viewers[tick]
            if v.queue.join(cache.snapshot(), now_us).request_keyframe:
                encoder.request_keyframe(now=now_us / 1e6)
                request_ticks.append(tick)
            joined.append(v)
            v.drain(tick)  # the edge sends what the join queued as soon as the link takes it
        out = encoder.encode(frames[tick % len(frames)], now=now_us / 1e6)
        stream.append(out)
        cache.add(out, out.index, out.keyframe, len(out.data), now_us)
        for v in joined:
            d = v.queue.offer(out, out.index, out.keyframe, len(out.data), now_us)
            if d.request_keyframe and encoder.request_keyframe(now=now_us / 1e6):
                request_ticks.append(tick)
        for v in joined:
            v.drain(tick)
    return stream, cache, request_ticks


def make_encoder(keyframe_interval_s: float) -> H264Encoder:
    return H264Encoder(320, 180, bitrate=300_000, keyframe_interval_s=keyframe_interval_s, min_keyframe_gap_s=0.1,
                       input_format="bgr24")


def test_join_mid_gop_replays_the_cached_gop_and_decodes_at_once(small_frames: list[Image]) -> None:
    early = Viewer("early", link=lambda i: 2)
    late = Viewer("late", link=lambda i: 40)
    stream, _, requests = run(small_frames, {0: early, 12: late}, 40, make_encoder(keyframe_interval_s=10.0))
    assert [i for i, f in enumerate(stream) if f.keyframe] == [0]  # no extra IDR was needed
    assert requests == [0]  # the first viewer found an empty cache (the first frame is an IDR anyway)
    assert early.shown == list(range(40)) and early.blank == 0
    # the late viewer got keyframe 0 and frames 1..11 from the cache in one burst, then followed live
    assert late.shown == list(range(40))
    assert late.blank == 0 and late.decoder.errors == 0


def test_join_into_a_long_gop_asks_for_a_fresh_idr(small_frames: list[Image]) -> None:
    early = Viewer("early", link=lambda i: 2)
    late = Viewer("late", link=lambda i: 2)
    # 60 frames into a 10 s GOP: a replay would be 60 frames, more than max_replay_frames (15)
    stream, _, requests = run(small_frames, {0: early, 60: late}, 80, make_encoder(keyframe_interval_s=10.0))
    assert requests == [0, 60]
    assert stream[60].keyframe and stream[60].keyframe_reason == "requested"
    # a still picture at once (the cached keyframe), then live from the fresh IDR on
    assert late.shown[0] == 0 and late.shown[1:] == list(range(60, 80))
    assert late.blank == 0 and early.blank == 0 and early.shown == list(range(80))


def test_a_stalled_viewer_skips_to_a_requested_keyframe_and_others_are_untouched(small_frames: list[Image]) -> None:
    healthy = Viewer("healthy", link=lambda i: 2)
    stalled = Viewer("stalled", link=lambda i: 0 if 30 <= i < 45 else 2)  # the link stops for 0.5 s
    stream, _, requests = run(small_frames, {0: healthy, 1: stalled}, 90, make_encoder(keyframe_interval_s=10.0))
    assert healthy.shown == list(range(90)) and healthy.blank == 0
    assert stalled.blank == 0 and stalled.decoder.errors == 0
    # the stalled viewer fell behind, asked for a keyframe and resumed from it
    assert stalled.queue.counters.dropped["behind"] > 0
    assert len(requests) >= 1
    resume = next(i for i in stalled.shown if i > 30 and stream[i].keyframe)
    assert stream[resume].keyframe_reason == "requested"
    assert stalled.shown[-1] == 89
    # never a P-frame after a gap: every jump in what it drew lands on a keyframe
    for prev, cur in zip(stalled.shown, stalled.shown[1:], strict=False):
        assert cur == prev + 1 or stream[cur].keyframe, (prev, cur)
    # the extra IDRs stayed rate-limited (one per min gap at most)
    assert sum(f.keyframe for f in stream) <= 1 + len(requests)
