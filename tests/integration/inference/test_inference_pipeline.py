"""The pipeline in-process against a real Valkey: a live source that fails and comes back, a failing model."""

from __future__ import annotations

import threading
import time

import numpy as np

from framecast.bus import Keys, StreamInfo, now_us, sync_client
from framecast.codecs.jpeg import make_encoder
from framecast.dev.embedded import EmbeddedRedis
from framecast.inference import metrics as M
from framecast.inference.encode import TierEncoder
from framecast.inference.pipeline import Pipeline
from framecast.inference.publish import DemandPolicy, DemandWatcher, FramePublisher
from framecast.inference.sources import Captured, SourceLost
from framecast.ladder import parse_ladder
from tests.integration.inference.conftest import frames
from tests.support.timing import wait_until

LADDER = parse_ladder("a=64x48@80,b=32x24@50")


class FlakyCamera:
    """A live source that fails after 5 frames and refuses to reopen twice before it works again."""

    description = "flaky test camera"
    fps = 100.0
    paced = False

    def __init__(self) -> None:
        self.reads = 0
        self.reopen_failures = 2
        self.broken = False

    def read(self, frame_id: int) -> Captured:
        self.reads += 1
        if self.reads == 6:
            self.broken = True
        if self.broken:
            raise SourceLost("flaky test camera: read failed")
        threading.Event().wait(0.01)  # a live source blocks until its next frame
        return Captured(np.full((48, 64, 3), frame_id % 256, np.uint8), now_us())

    def reopen(self) -> None:
        if self.reopen_failures > 0:
            self.reopen_failures -= 1
            raise SourceLost("flaky test camera: still unplugged")
        self.broken = False

    def close(self) -> None:
        pass


def counter(metric: str, label: str) -> float:
    return float({"source": M.SOURCE_ERRORS, "dropped": M.DROPPED}[metric].labels(label)._value.get())


def test_lost_source_reconnects_and_failing_frames_do_not_stop_the_stream(redis_server: EmbeddedRedis) -> None:
    client = sync_client(redis_server.url)
    keys = Keys()
    M.init_series([t.name for t in LADDER])
    calls = {"n": 0}

    def model(image: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("model hiccup")
        return 255 - image

    policy = DemandPolicy(len(LADDER), publish_all=True)
    info = StreamInfo(stream="cam", tiers=tuple(t.describe(64, 48) for t in LADDER), fps=100.0)
    encoder = TierEncoder(make_encoder("simplejpeg"), LADDER, 64, 48)
    source = FlakyCamera()
    errors_before = (counter("source", "read"), counter("source", "reopen"), counter("dropped", "inference_error"))
    pipeline = Pipeline(source, model, encoder, policy,
                        FramePublisher(client, "cam", keys, LADDER, maxlen=500, ids_synced=True),
                        DemandWatcher(client, "cam", keys, LADDER, policy, info, poll_s=0.05),
                        first_frame_id=1)
    pipeline.start()
    try:
        wait_until("frames after the source came back",
                   lambda: source.reads > 10 and len(frames(client, "a", "cam")) > 8, 20.0)
    finally:
        pipeline.stop.set()
        assert pipeline.join(3.0)
        encoder.close()
    got = frames(client, "a", "cam")
    ids = [f.header.frame_id for f in got]
    assert ids == sorted(set(ids)) and ids[-1] > 6  # frames from after the reconnect
    assert (got[0].header.width, got[0].header.height) == (64, 48)
    assert len(frames(client, "b", "cam")) == len(got)
    assert counter("source", "read") - errors_before[0] == 1
    assert counter("source", "reopen") - errors_before[1] == 2
    assert counter("dropped", "inference_error") - errors_before[2] == 1


class FreezingCamera:
    """A live source whose reads hang while `frozen` is set (a wedged driver)."""

    description = "freezing test camera"
    fps = 50.0
    paced = False

    def __init__(self) -> None:
        self.frozen = threading.Event()
        self.thawed = threading.Event()

    def read(self, frame_id: int) -> Captured:
        if self.frozen.is_set():
            self.thawed.wait(10.0)
        threading.Event().wait(0.02)
        return Captured(np.zeros((48, 64, 3), np.uint8), now_us())

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        self.thawed.set()


def test_heartbeat_stops_while_frames_stall_and_resumes(redis_server: EmbeddedRedis) -> None:
    client = sync_client(redis_server.url)
    keys = Keys()
    policy = DemandPolicy(len(LADDER), idle_fps=0.0)  # nobody watching: frames flow but nothing is encoded
    info = StreamInfo(stream="frz", tiers=tuple(t.describe(64, 48) for t in LADDER), fps=50.0)
    encoder = TierEncoder(make_encoder("opencv"), LADDER, 64, 48)
    source = FreezingCamera()

    def beat_age_s() -> float:
        beat = client.get(keys.heartbeat("frz"))
        return (now_us() - int(beat)) / 1e6 if beat else 1e9

    pipeline = Pipeline(source, lambda image: image, encoder, policy,
                        FramePublisher(client, "frz", keys, LADDER, maxlen=10, ids_synced=True),
                        DemandWatcher(client, "frz", keys, LADDER, policy, info, poll_s=0.05, heartbeat_s=0.1,
                                      alive=lambda: pipeline.alive()),
                        first_frame_id=1, stall_after=0.3)
    pipeline.start()
    try:
        wait_until("a heartbeat while idle", lambda: beat_age_s() < 0.3, 10.0)  # idle is not stalled
        source.frozen.set()
        wait_until("the heartbeat to age while the source hangs", lambda: beat_age_s() > 0.8, 10.0)
        assert client.get(keys.meta("frz")) is not None  # the ladder stays announced
        source.frozen.clear()
        source.thawed.set()
        wait_until("the heartbeat after the source recovered", lambda: beat_age_s() < 0.3, 10.0)
    finally:
        pipeline.stop.set()
        source.thawed.set()
        assert pipeline.join(3.0)
        encoder.close()


class SlowEncoder:
    """A JPEG encoder that takes 40 ms a frame (sleeping: no CPU, so the test holds on a busy machine)."""

    name = "slow"

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        threading.Event().wait(0.04)
        return make_encoder("simplejpeg").encode(rgb, quality)


def test_stages_overlap_so_the_slowest_stage_sets_the_rate(redis_server: EmbeddedRedis) -> None:
    """Model 40 ms + encode 40 ms: run one after the other that is 12.5 fps; overlapped, about 25."""
    client = sync_client(redis_server.url)
    keys = Keys()
    ladder = parse_ladder("a=64x48@80")
    policy = DemandPolicy(1, publish_all=True)
    encoder = TierEncoder(SlowEncoder(), ladder, 64, 48)

    class Camera(FlakyCamera):
        fps = 100.0

        def read(self, frame_id: int) -> Captured:
            threading.Event().wait(0.01)
            return Captured(np.zeros((48, 64, 3), np.uint8), now_us())

    def slow_model(image: np.ndarray) -> np.ndarray:
        threading.Event().wait(0.04)
        return image

    info = StreamInfo(stream="ovl", tiers=tuple(t.describe(64, 48) for t in ladder), fps=100.0)
    pipeline = Pipeline(Camera(), slow_model, encoder, policy,
                        FramePublisher(client, "ovl", keys, ladder, maxlen=1000, ids_synced=True),
                        DemandWatcher(client, "ovl", keys, ladder, policy, info), first_frame_id=1)
    pipeline.start()
    try:
        wait_until("first frames", lambda: len(frames(client, "a", "ovl")) >= 5, 10.0)
        start_n, started = len(frames(client, "a", "ovl")), time.monotonic()
        threading.Event().wait(2.0)  # measure the published rate over two seconds
        rate = (len(frames(client, "a", "ovl")) - start_n) / (time.monotonic() - started)
    finally:
        pipeline.stop.set()
        assert pipeline.join(3.0)
        encoder.close()
    assert rate > 17.0, f"{rate:.1f} fps: stages do not overlap"
