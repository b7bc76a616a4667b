"""Settings of the inference service: defaults, flags over env, exit 2 naming the setting."""

from __future__ import annotations

import pytest

from framecast.inference.settings import InferenceSettings
from framecast.settings import load_settings
from tests.support.settings import refusal


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STREAM", "SOURCE", "FPS", "WIDTH", "HEIGHT", "TIERS", "METRICS_PORT", "MODEL", "ENCODER"):
        monkeypatch.delenv(f"FRAMECAST_{name}", raising=False)
    s = load_settings(InferenceSettings, [])
    assert (s.stream, s.source, s.fps, s.width, s.height) == ("demo", "synthetic", 30.0, 1280, 720)
    assert (s.model, s.device, s.encoder, s.metrics_port, s.demand) == ("builtin", "auto", "simplejpeg", 9101, "edges")
    assert [t.name for t in s.ladder] == ["video-high", "video-low", "high", "mid", "low"]


def test_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMECAST_FPS", "12")
    monkeypatch.setenv("FRAMECAST_SOURCE", "camera:3")
    s = load_settings(InferenceSettings, ["--fps", "25", "--loop", "--encoder", "opencv"])
    assert (s.fps, s.source, s.loop, s.encoder) == (25.0, "camera:3", True, "opencv")


@pytest.mark.parametrize(("env", "argv", "name"), [
    ({}, ["--fps", "0"], "FRAMECAST_FPS"),
    ({"FRAMECAST_WIDTH": "wide"}, [], "FRAMECAST_WIDTH"),
    ({}, ["--tiers", "high=1280x720"], "FRAMECAST_TIERS"),
    ({}, ["--source", "webcam"], "FRAMECAST_SOURCE"),
    ({}, ["--source", "camera:x"], "FRAMECAST_SOURCE"),
    ({}, ["--stream", "no spaces"], "FRAMECAST_STREAM"),
    ({}, ["--metrics-port", "70000"], "FRAMECAST_METRICS_PORT"),
    ({}, ["--maxlen", "0"], "FRAMECAST_MAXLEN"),
    ({}, ["--device", "tpu"], "--device"),
])
def test_bad_values_exit_2_naming_the_setting(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              env: dict[str, str], argv: list[str], name: str) -> None:
    assert name in refusal(InferenceSettings, argv, env, "framecast-inference", monkeypatch, capsys)
