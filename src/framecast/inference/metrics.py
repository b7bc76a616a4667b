"""Every Prometheus metric of the inference service (`framecast_inference_*`).

All series the dashboards use are created at zero by `init_series` before the
first frame. Labels are low-cardinality: stage, tier, reason, outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

STAGES = ("capture", "inference", "encode", "publish")
OUTCOMES = ("ok", "error", "dropped")
# why a frame did not reach Redis: the next stage was still busy with an older frame
# (newest wins), a newer frame was already published (several encode workers), nobody asked for a
# tier, Redis refused or was away, the model or the encoder failed
DROP_REASONS = ("inference_busy", "encode_busy", "publish_busy", "reordered", "no_demand", "redis_error",
                "redis_down", "inference_error", "encode_error")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.016, 0.025, 0.033, 0.05, 0.075, 0.1,
                    0.2, 0.5, 1.0)
# from 1 kB: H.264 frames of the low video tier are ~3.3 kB (delta frames of a still scene far less)
_BYTES_BUCKETS = (1e3, 2e3, 3e3, 4e3, 5e3, 7.5e3, 10e3, 20e3, 40e3, 60e3, 80e3, 120e3, 160e3, 250e3, 400e3, 1e6)

STAGE_SECONDS = Histogram("framecast_inference_stage_seconds",
                          "Time one frame spends in a pipeline stage (encode: all its tiers in parallel)",
                          ["stage"], buckets=_LATENCY_BUCKETS)
ENCODE_SECONDS = Histogram("framecast_inference_encode_seconds", "Time to resize and JPEG-encode one tier",
                           ["tier"], buckets=_LATENCY_BUCKETS)
CAPTURE_TO_PUBLISH_SECONDS = Histogram("framecast_inference_capture_to_publish_seconds",
                                       "From capture time to the XADD of the frame", buckets=_LATENCY_BUCKETS)
ENCODED_BYTES = Histogram("framecast_inference_encoded_bytes", "Size of one encoded frame", ["tier"],
                          buckets=_BYTES_BUCKETS)
FRAMES = Counter("framecast_inference_frames_total", "Frames leaving a stage, by outcome", ["stage", "outcome"])
DROPPED = Counter("framecast_inference_frames_dropped_total", "Frames dropped before Redis, by reason", ["reason"])
PUBLISHED = Counter("framecast_inference_published_frames_total", "Frames XADDed to Redis, by tier", ["tier"])
REDIS_ERRORS = Counter("framecast_inference_bus_errors_total", "Failed Redis round trips, by operation",
                       ["op"])
SOURCE_ERRORS = Counter("framecast_inference_source_errors_total", "Source read failures and reconnects", ["kind"])
DEMANDED = Gauge("framecast_inference_tier_demanded", "1 while some edge asks for the tier", ["tier"])
INFO = Gauge("framecast_inference_info", "Model and runtime of this service (value 1)",
             ["stream", "model", "device", "dtype", "source", "encoder"])
GPU_MEMORY = Gauge("framecast_inference_gpu_memory_bytes", "CUDA memory of this process (0 on CPU)", ["kind"])
TARGET_FPS = Gauge("framecast_inference_target_fps", "Native frame rate of the source")

VIDEO_KEYFRAMES = Counter("framecast_inference_video_keyframes_total",
                          "IDR frames encoded for a video tier, by why (first/interval/requested/resumed/encoder)",
                          ["tier", "reason"])
KEYFRAME_REQUESTS = Counter("framecast_inference_video_keyframe_requests_total",
                            "Keyframe requests for a video tier, by source (edge: Redis request; started: demand "
                            "began; lost: an encoded frame was not published) and outcome (accepted/coalesced)",
                            ["tier", "source", "outcome"])

SOURCE_ERROR_KINDS = ("read", "reopen")
OPS = ("publish", "demand", "heartbeat", "keyframe")
KEYFRAME_REASONS = ("first", "interval", "requested", "resumed", "encoder")  # framecast.codecs.h264_encoder's
KEYFRAME_REQUEST_SOURCES = ("edge", "started", "lost")
KEYFRAME_REQUEST_OUTCOMES = ("accepted", "coalesced")


def init_series(tiers: Iterable[str], video_tiers: Iterable[str] = ()) -> None:
    """Create every labelled series at zero so they exist before the first frame."""
    for tier in video_tiers:
        for reason in KEYFRAME_REASONS:
            VIDEO_KEYFRAMES.labels(tier, reason).inc(0)
        for source in KEYFRAME_REQUEST_SOURCES:
            for outcome in KEYFRAME_REQUEST_OUTCOMES:
                KEYFRAME_REQUESTS.labels(tier, source, outcome).inc(0)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage)
        for outcome in OUTCOMES:
            FRAMES.labels(stage, outcome).inc(0)
    for reason in DROP_REASONS:
        DROPPED.labels(reason).inc(0)
    for tier in tiers:
        ENCODE_SECONDS.labels(tier)
        ENCODED_BYTES.labels(tier)
        PUBLISHED.labels(tier).inc(0)
        DEMANDED.labels(tier).set(0)
    for op in OPS:
        REDIS_ERRORS.labels(op).inc(0)
    for kind in SOURCE_ERROR_KINDS:
        SOURCE_ERRORS.labels(kind).inc(0)
    for kind in ("allocated", "reserved"):
        GPU_MEMORY.labels(kind).set(0)


def drop(reason: str, stage: str, n: int = 1) -> None:
    DROPPED.labels(reason).inc(n)
    FRAMES.labels(stage, "dropped").inc(n)


def serve(host: str, port: int) -> tuple[WSGIServer, threading.Thread, int]:
    """Start the /metrics HTTP server; returns it with the port it bound (port 0: a free one)."""
    server, thread = start_http_server(port, addr=host)
    return server, thread, int(server.server_port)
