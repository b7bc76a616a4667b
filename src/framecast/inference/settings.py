"""Settings of the inference service (flags, `FRAMECAST_*` environment variables, defaults)."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from framecast import constants as C
from framecast.ladder import DEFAULT_LADDER, AnyTier, parse_ladder
from framecast.settings import CommonSettings

SOURCE_FORMS = "synthetic, file:PATH, camera:INDEX, rtsp://..., http(s)://..."


class InferenceSettings(CommonSettings):
    """Everything `python -m framecast.inference` can be told."""

    stream: str = Field(C.DEFAULT_STREAM, description="stream name to publish")
    source: str = Field("synthetic", description=f"frame source: {SOURCE_FORMS}")
    loop: bool = Field(False, description="start a file source again at its end (else the service exits 0)")
    fps: float = Field(30.0, gt=0, le=240, description="frame rate of the synthetic source (and of files that "
                                                       "do not say theirs)")
    width: int = Field(1280, ge=16, le=7680, description="width of the frames fed to the model")
    height: int = Field(720, ge=16, le=4320, description="height of the frames fed to the model")
    model: str = Field("builtin", description="builtin, package.module:factory, a TorchScript file (.pt) or a "
                                              "torch.export file (.pt2)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch device (auto: cuda when present)")
    fp16: bool = Field(False, description="run the model in float16 (CUDA only; ignored on CPU)")
    compile: bool = Field(False, description="torch.compile the model (CUDA only; ignored on CPU)")
    torch_threads: int = Field(0, ge=0, le=256,
                               description="torch intra-op threads on CPU (0: one fewer than the CPU count, max 8)")
    tiers: str = Field(DEFAULT_LADDER, description="quality ladder, best first: name=WIDTHxHEIGHT@QUALITY,... "
                                                   "(JPEG) or name=WIDTHxHEIGHT@h264:2500k|crf23 (H.264 video)")
    keyframe_interval_s: float = Field(2.0, gt=0, le=60, description="video tiers: an IDR every this many seconds")
    keyframe_min_gap_s: float = Field(0.25, ge=0, le=10, description="video tiers: least time between two "
                                                                     "requested IDRs")
    keyframe_poll_ms: int = Field(100, ge=10, le=10_000, description="video tiers: how often keyframe requests "
                                                                     "from edges are read (before a frame)")
    video_encoder: Literal["auto", "libx264", "h264_nvenc"] = Field(
        "auto", description="H.264 encoder of video tiers (auto: h264_nvenc when it works, else libx264)")
    encoder: Literal["simplejpeg", "opencv"] = Field("simplejpeg", description="JPEG encoder")
    encode_threads: int = Field(0, ge=0, le=64, description="threads encoding tiers in parallel (0: one per tier, "
                                                           "at most the CPU count)")
    encode_workers: int = Field(1, ge=1, le=16, description="frames encoded at once (more than 1 overlaps one "
                                                             "frame's tiers with the next one's on many cores)")
    maxlen: int = Field(60, ge=1, le=100_000, description="entries kept per tier stream (XADD MAXLEN ~)")
    demand: Literal["edges", "all"] = Field("edges", description="edges: encode only tiers edges ask for; "
                                                                 "all: encode every tier of every frame")
    idle_fps: float = Field(1.0, ge=0, le=60, description="rate of lowest-tier frames published while no edge "
                                                          "asks for any tier (0: none)")
    demand_poll_ms: int = Field(250, ge=20, le=10_000, description="how often the demand keys are read")
    metrics_host: str = Field("127.0.0.1", description="address of the Prometheus metrics server")
    metrics_port: int = Field(C.DEFAULT_INFERENCE_METRICS_PORT, ge=0, le=65535,
                              description="port of the Prometheus metrics server (0: any free port)")

    @field_validator("stream")
    @classmethod
    def _check_stream(cls, value: str) -> str:
        if not C.STREAM_NAME_RE.match(value):
            raise ValueError(f"must match {C.STREAM_NAME_RE.pattern}")
        return value

    @field_validator("tiers")
    @classmethod
    def _check_tiers(cls, value: str) -> str:
        parse_ladder(value)  # raises ValueError naming the bad tier
        return value

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        if value == "synthetic" or value.startswith(("rtsp://", "rtsps://", "http://", "https://")):
            return value
        if value.startswith("file:") and len(value) > len("file:"):
            return value
        if value.startswith("camera:") and value[len("camera:"):].isdigit():
            return value
        raise ValueError(f"must be one of {SOURCE_FORMS}")

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be builtin, package.module:factory or a path to a TorchScript file")
        return value

    @cached_property
    def ladder(self) -> tuple[AnyTier, ...]:
        return parse_ladder(self.tiers)
