"""The whole video path in miniature, real parts only: encoder thread -> Valkey -> video reader ->
GOP cache and viewer queues -> decoders, with a late viewer's keyframe request going back through Redis.

No edge or inference service is involved: this checks that the building blocks fit as
INTEGRATION.md says, with real timing (a 30 fps source thread, asyncio on the other side).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from framecast.bus import BusPublisher, Keys, async_client, now_us, sync_client
from framecast.bus.read import read_video_frames
from framecast.bus.signals import AsyncKeyframeRequester, KeyframeRequestPoller
from framecast.codecs.h264_decoder import H264Decoder
from framecast.codecs.h264_encoder import VideoTierEncoder
from framecast.dev.embedded import EmbeddedRedis
from framecast.edge.gop import GopCache, GopViewerQueue
from framecast.ladder import parse_video_tier
from framecast.protocol import Frame, decode_frame
from tests.support.timing import scaled

from .conftest import Image
from .h264_check import video_message

KEYS = Keys("fcpath:")
STREAM, TIER = "demo", "video"
FPS = 30.0


def source(redis_url: str, frames: list[Image], stop: threading.Event, reasons: list[str | None]) -> None:
    """The inference side: poll keyframe requests, encode, publish, at 30 fps."""
    client = sync_client(redis_url)
    publisher = BusPublisher(client, STREAM, keys=KEYS, maxlen=120)
    poller = KeyframeRequestPoller(client, KEYS, STREAM, min_interval_s=0.0)
    venc = VideoTierEncoder(parse_video_tier("video=320x180@h264:400k"), tier_index=0, input_format="bgr24",
                            keyframe_interval_s=60.0, min_keyframe_gap_s=0.1)
    start = time.monotonic()
    i = 0
    while not stop.is_set() and i < 600:
        for _req in poller.poll([TIER], time.monotonic()):
            venc.request_keyframe()
        out = venc.encode(frames[i % len(frames)])
        reasons.append(out.keyframe_reason)
        capture = now_us()
        publisher.publish({TIER: video_message(venc, out, frame_id=i, capture_us=capture)}, capture)
        i += 1
        stop.wait(max(0.0, start + i / FPS - time.monotonic()))  # a 30 fps source, not a readiness wait
    client.close()


@dataclass
class Viewer:
    queue: GopViewerQueue[Frame] = field(default_factory=GopViewerQueue)
    decoder: H264Decoder = field(default_factory=H264Decoder)
    pictures: list[int] = field(default_factory=list)
    joined_at: float = 0.0
    first_picture_at: float | None = None

    def drain(self) -> None:
        while (frame := self.queue.pop()) is not None:
            if self.decoder.decode(frame.payload, frame.header.keyframe) is not None:
                self.pictures.append(frame.header.frame_id)
                if self.first_picture_at is None:
                    self.first_picture_at = time.monotonic()


async def test_late_viewer_gets_a_picture_fast_and_every_sent_frame_decodes(redis_server: EmbeddedRedis,
                                                                            small_frames: list[Image]) -> None:
    stop = threading.Event()
    reasons: list[str | None] = []
    producer = threading.Thread(target=source, args=(redis_server.url, small_frames, stop, reasons), daemon=True)
    client = async_client(redis_server.url, block_ms=200)
    requester = AsyncKeyframeRequester(client, KEYS, edge_id="edge-test", min_interval_s=0.1)
    cache: GopCache[Frame] = GopCache()
    early, late = Viewer(), Viewer()
    viewers: list[Viewer] = []
    requests = 0

    def request() -> None:
        nonlocal requests
        requests += requester.request_nowait(STREAM, TIER)

    async def edge() -> None:
        async for entry in read_video_frames(client, KEYS.frames(STREAM, TIER), block_ms=200):
            frame = decode_frame(entry.message)
            now = now_us()
            if entry.gap:
                cache.break_chain()
                for v in viewers:
                    v.queue.break_chain(now)
            cache.add(frame, frame.header.frame_id, frame.header.keyframe, len(entry.message), now)
            for v in viewers:
                if v.queue.offer(frame, frame.header.frame_id, frame.header.keyframe, len(entry.message),
                                 now).request_keyframe:
                    request()
                v.drain()

    producer.start()
    reader = asyncio.create_task(edge())
    try:
        early.joined_at = time.monotonic()
        if early.queue.join(cache.snapshot(), now_us()).request_keyframe:
            request()
        viewers.append(early)
        # join the late viewer 1.5 s in: 45 frames into a 60 s GOP, too long to replay
        deadline = time.monotonic() + scaled(10)
        while len(reasons) < 45:
            assert time.monotonic() < deadline, "the source did not produce"
            await asyncio.sleep(0.01)
        late.joined_at = time.monotonic()
        snapshot = cache.snapshot()
        cached_key = snapshot.frames[0].frame_id
        d = late.queue.join(snapshot, now_us())
        assert d.reason == "join-keyframe-only" and d.request_keyframe
        request()
        late.drain()  # the cached keyframe: a still picture at once
        viewers.append(late)
        while len(reasons) < 75 or len(late.pictures) < 10:
            assert time.monotonic() < deadline, f"late viewer stuck at {late.pictures}"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        producer.join(scaled(5))
        await requester.drain()
        await client.aclose()

    assert early.decoder.errors == 0 and late.decoder.errors == 0
    assert late.first_picture_at is not None and late.first_picture_at - late.joined_at < scaled(0.1)
    assert late.pictures[0] == cached_key  # the cached keyframe
    live = late.pictures[1:]
    assert reasons[live[0]] == "requested"  # then live from the IDR it asked for
    assert live == list(range(live[0], live[0] + len(live)))
    print(f"late viewer: still picture after {(late.first_picture_at - late.joined_at) * 1000:.1f} ms, live from "
          f"frame {live[0]} ({live[0] - 45} frames after the join)")
    assert live[0] - 45 <= 12  # the IDR came within ~0.4 s of the join (request, GETDEL, min gap)
    assert early.pictures == list(range(early.pictures[0], early.pictures[0] + len(early.pictures)))
    assert reasons.count("requested") <= 2 and requests >= 1  # the early viewer's (empty cache) and the late one's
