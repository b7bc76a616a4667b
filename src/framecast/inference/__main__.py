"""`python -m framecast.inference`: run the inference service for one stream until SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from framecast import constants as C
from framecast.bus import REDIS_ERRORS, Keys, StreamInfo, now_us, sync_client
from framecast.inference.settings import InferenceSettings
from framecast.logs import setup_logging
from framecast.settings import load_settings

if TYPE_CHECKING:
    from framecast.inference.pipeline import Pipeline

PROG = "framecast-inference"
log = logging.getLogger("framecast.inference")


class StartupInterrupted(Exception):
    """SIGTERM/SIGINT arrived before the pipeline ran (raised from the signal handler)."""


def fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return C.EXIT_BAD_SETTING


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(InferenceSettings, argv, prog=PROG,
                             description="Run a torch model on a frame source and publish JPEG/H.264 tiers to Redis.")
    setup_logging(settings.log_level, settings.log_format)
    stop = threading.Event()
    started = threading.Event()  # set just before the pipeline threads start

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()
        if not started.is_set():  # abandon start-up at once (even in the middle of importing torch)
            raise StartupInterrupted

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.ExitStack() as cleanup:  # closes what start-up opened, in reverse order, on every way out
        try:
            pipeline = start(settings, stop, started, cleanup)
        except StartupInterrupted:
            return 0
        if isinstance(pipeline, int):
            return pipeline
        while not stop.wait(0.5):
            pass
        if not pipeline.join(1.5):
            log.warning("some stages did not stop within 1.5 s; exiting anyway")
    log.info("stopped")
    return 0


def start(settings: InferenceSettings, stop: threading.Event, started: threading.Event,
          cleanup: contextlib.ExitStack) -> Pipeline | int:
    """Open the source, load the model, serve metrics and start the pipeline; an exit code on a bad start."""
    import cv2  # after settings: a bad flag should not wait for heavy imports

    from framecast.bus.signals import KeyframeRequestPoller
    from framecast.codecs.jpeg import make_encoder
    from framecast.inference import metrics as M
    from framecast.inference.encode import TierEncoder, VideoOptions
    from framecast.inference.modelspec import preflight
    from framecast.inference.pipeline import Pipeline
    from framecast.inference.publish import DemandPolicy, DemandWatcher, FramePublisher, newest_frame_id
    from framecast.inference.sources import SourceError, open_source
    from framecast.ladder import VideoTier
    from framecast.logs import redact_url

    cv2.setNumThreads(1)  # parallelism comes from our own threads; OpenCV's pool would oversubscribe the cores
    ladder = settings.ladder
    video_names = [t.name for t in ladder if isinstance(t, VideoTier)]
    if video_names:
        try:
            import framecast.codecs.h264_encoder  # noqa: F401  (PyAV's libx264 / h264_nvenc encode video tiers)
        except ImportError as exc:
            return fail(f"invalid setting FRAMECAST_TIERS (--tiers): video tier(s) {', '.join(video_names)} need "
                        f"PyAV ({exc}); install it (pip install 'framecast[inference]') or list JPEG tiers only")
    try:
        source = open_source(settings.source, settings.width, settings.height, fps=settings.fps, loop=settings.loop)
    except SourceError as exc:
        return fail(str(exc))
    cleanup.callback(source.close)

    problem = preflight(settings.model)
    if problem is not None:
        return fail(problem)

    # the metrics port is taken before the slow model load, so a port conflict fails at once
    names = [t.name for t in ladder]
    M.init_series(names, [t.name for t in ladder if isinstance(t, VideoTier)])
    M.TARGET_FPS.set(source.fps)
    try:
        server, _, port = M.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        return fail(f"invalid setting FRAMECAST_METRICS_PORT (--metrics-port): cannot listen on "
                    f"{settings.metrics_host}:{settings.metrics_port}: {exc.strerror or exc}")
    cleanup.callback(server.shutdown)
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, port)

    from framecast.inference.model import ModelError, load_engine  # imports torch (1-5 s)

    try:
        engine = load_engine(settings.model, settings.device, settings.width, settings.height, fp16=settings.fp16,
                             compile=settings.compile, torch_threads=settings.torch_threads)
    except ModelError as exc:
        return fail(str(exc))
    M.INFO.labels(settings.stream, engine.info.model, engine.info.device, engine.info.dtype,
                  redact_url(settings.source), settings.encoder).set(1)

    client = None
    while client is None:  # a cluster client reads the slot map at once: wait for a seed node to answer
        try:
            client = sync_client(settings.redis_url)
        except REDIS_ERRORS as exc:
            log.warning("redis %s not reachable (%s); retrying", redact_url(settings.redis_url), exc)
            if stop.wait(1.0):
                return 0
    cleanup.callback(client.close)
    keys = Keys(settings.key_prefix)
    first_id, synced = 1, False
    deadline = time.monotonic() + 2.0
    while True:
        try:
            newest = newest_frame_id(client, keys, settings.stream, names)
            first_id, synced = (newest + 1 if newest is not None else 1), True
            break
        except REDIS_ERRORS as exc:
            if time.monotonic() > deadline:
                log.warning("redis %s not reachable (%s); starting anyway, frames are dropped until it is",
                            redact_url(settings.redis_url), exc)
                break
            stop.wait(0.2)

    encoder = TierEncoder(make_encoder(settings.encoder), ladder, settings.width, settings.height,
                          settings.encode_threads,
                          video=VideoOptions(fps=source.fps, keyframe_interval_s=settings.keyframe_interval_s,
                                             keyframe_min_gap_s=settings.keyframe_min_gap_s,
                                             encoder=settings.video_encoder),
                          keyframe_poller=KeyframeRequestPoller(client, keys, settings.stream,
                                                                min_interval_s=settings.keyframe_poll_ms / 1000))
    cleanup.callback(encoder.close)
    info = StreamInfo(stream=settings.stream, tiers=tuple(encoder.describe(i) for i in range(len(ladder))),
                      fps=source.fps, model=engine.info.model, device=engine.info.device,
                      source=redact_url(settings.source), started_us=now_us())
    policy = DemandPolicy(len(ladder), idle_fps=settings.idle_fps, publish_all=settings.demand == "all")

    def gpu_tick() -> None:
        allocated, reserved = engine.gpu_memory()
        M.GPU_MEMORY.labels("allocated").set(allocated)
        M.GPU_MEMORY.labels("reserved").set(reserved)

    publisher = FramePublisher(client, settings.stream, keys, ladder, maxlen=settings.maxlen, ids_synced=synced)
    watcher = DemandWatcher(client, settings.stream, keys, ladder, policy, info,
                            poll_s=settings.demand_poll_ms / 1000, on_tick=gpu_tick, alive=lambda: pipeline.alive())
    pipeline = Pipeline(source, engine, encoder, policy, publisher, watcher, first_frame_id=first_id, stop=stop,
                        encode_workers=settings.encode_workers)
    started.set()  # from here a signal only sets `stop`: the stages see it and end
    pipeline.start()
    log.info("stream %s: %s -> %s on %s (%s) -> tiers %s via %s, first frame id %d, demand %s", settings.stream,
             source.description, engine.info.model, engine.info.device, engine.info.dtype, settings.tiers,
             settings.encoder, first_id, settings.demand)
    return pipeline


def run() -> None:
    """Run as a process and leave fast: everything is closed already, so skip the interpreter's teardown
    (torch, OpenCV and thread-pool finalizers take a second or more on a busy machine)."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
