"""Bad configuration: every constrained setting of every service, given a bad value, exits 2 naming the setting.

The cases are derived from the settings classes themselves (numeric bounds,
`Literal` choices, booleans, types) plus one hand-written bad value per custom
validator, and a guard fails the test when a validated field has no case, so a
new constraint cannot go untested. Each case runs the service's real `main()`
in-process (a guard makes an accepted value fail the test instead of starting
a server), as a flag and as an environment variable; a few run as real
processes to prove the exit status.
"""

from __future__ import annotations

import subprocess
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

import annotated_types as at
import pytest
from pydantic_settings import BaseSettings

import framecast.edge.__main__ as edge_main
import framecast.inference.__main__ as inference_main
from framecast import constants as C
from framecast.edge.settings import EdgeSettings
from framecast.inference.settings import InferenceSettings
from framecast.settings import env_name, flag_name
from tests.support.procs import REPO
from tests.support.timing import scaled

# one bad value for each field checked by a custom validator
VALIDATED_BAD: dict[str, list[str]] = {
    "redis_url": ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis+sentinel://127.0.0.1:26379",
                  "redis+cluster://127.0.0.1:70000"],
    "key_prefix": ["has space:", "{braces}:", "x" * 65],
    "edge_id": ["e" * 65],
    "allowed_origins": ["ftp://example.com", "example.com"],
    "forwarded_allow_ips": ["10.0.0.0/33", "proxy.local"],
    "stream": ["bad name!", "x" * 65, ""],
    "tiers": ["high=1280x720", "high=0x0@80", "garbage"],
    "source": ["ftp://x", "camera:front", "file:"],
    "model": ["   "],
}
# validators comparing two fields, each with its own test below
CROSS_FIELD = {"metrics_port"}
Case = tuple[str, str, str]  # field, value, how ("flag" | "env")


def _validated_fields(cls: type[BaseSettings]) -> set[str]:
    return {f for dec in cls.__pydantic_decorators__.field_validators.values() for f in dec.info.fields}


def _bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    return get_origin(annotation) in (typing.Union, types.UnionType) and bool in get_args(annotation)


def bad_values(cls: type[BaseSettings]) -> list[Case]:
    cases: list[Case] = []
    for name, info in cls.model_fields.items():
        ann = info.annotation
        values: list[tuple[str, str]] = []
        if get_origin(ann) is Literal:
            values += [("bogus-choice", "flag"), ("bogus-choice", "env")]
        elif _bool(ann):
            values.append(("maybe", "env"))  # flags are --x/--no-x and cannot carry a bad value
        elif ann in (int, float):
            values.append(("not-a-number", "flag"))
            if ann is int:
                values.append(("1.5", "env"))
            for m in info.metadata:
                step = 1 if ann is int else 0.5
                bound: Any = getattr(m, "ge", getattr(m, "gt", getattr(m, "le", getattr(m, "lt", None))))
                if isinstance(m, at.Ge):
                    values.append((str(bound - step), "flag"))
                elif isinstance(m, at.Gt):
                    values.append((str(bound), "flag"))
                elif isinstance(m, at.Le):
                    values.append((str(bound + step), "env"))
                elif isinstance(m, at.Lt):
                    values.append((str(bound), "env"))
        for i, v in enumerate(VALIDATED_BAD.get(name, [])):
            values.append((v, "flag" if i % 2 == 0 else "env"))
        cases += [(name, v, how) for v, how in values]
    return cases


SERVICES: dict[str, tuple[type[BaseSettings], Callable[..., object], str]] = {
    "edge": (EdgeSettings, edge_main.main, "framecast.edge"),
    "inference": (InferenceSettings, inference_main.main, "framecast.inference"),
}
ALL_CASES = [pytest.param(svc, *case, id=f"{svc}-{case[0]}-{case[2]}-{case[1][:20]}")
             for svc, (cls, _, _) in SERVICES.items() for case in bad_values(cls)]


def test_every_constrained_field_has_cases() -> None:
    for svc, (cls, _, _) in SERVICES.items():
        covered = {f for f, _, _ in bad_values(cls)}
        constrained = {n for n, i in cls.model_fields.items()
                       if i.metadata or get_origin(i.annotation) is Literal or _bool(i.annotation)
                       or i.annotation in (int, float)} | _validated_fields(cls)
        missing = constrained - covered
        assert not missing, f"{svc}: no bad-value case for {sorted(missing)} (add one to VALIDATED_BAD)"
        assert _validated_fields(cls) - CROSS_FIELD <= set(VALIDATED_BAD), f"{svc}: validators without a case"


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a bad value were accepted, fail at once instead of starting a server."""
    def accepted(*_a: object, **_k: object) -> None:
        raise AssertionError("the bad value was accepted")

    monkeypatch.setattr(edge_main, "setup_logging", accepted)
    monkeypatch.setattr(inference_main, "setup_logging", accepted)


@pytest.mark.parametrize(("service", "field", "value", "how"), ALL_CASES)
def test_bad_value_exits_2_naming_the_setting(service: str, field: str, value: str, how: str, no_start: None,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for name in (*EdgeSettings.model_fields, *InferenceSettings.model_fields):
        monkeypatch.delenv(env_name(name), raising=False)
    _, main, _ = SERVICES[service]
    argv: list[str] = []
    if how == "env":
        monkeypatch.setenv(env_name(field), value)
    else:
        argv = [f"{flag_name(field)}={value}"]
    if field == "metrics_port" and service == "edge":
        argv += ["--port", "9000"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == C.EXIT_BAD_SETTING, err
    assert flag_name(field) in err, err
    if how == "env" or "invalid choice" not in err:
        assert env_name(field) in err, err


def test_metrics_port_equal_to_port_is_refused(no_start: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        edge_main.main(["--port", "9000", "--metrics-port", "9000"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "FRAMECAST_METRICS_PORT" in err and "--metrics-port" in err, err


@pytest.mark.parametrize(("module", "env", "args", "name"), [
    ("framecast.edge", {"FRAMECAST_MAX_INFLIGHT_FRAMES": "99"}, [], "FRAMECAST_MAX_INFLIGHT_FRAMES"),
    ("framecast.edge", {}, ["--allowed-origins", "ftp://x"], "--allowed-origins"),
    ("framecast.inference", {"FRAMECAST_TIERS": "garbage"}, [], "FRAMECAST_TIERS"),
    ("framecast.inference", {}, ["--fps", "0"], "--fps"),
], ids=["edge-env", "edge-flag", "inference-env", "inference-flag"])
def test_real_process_exits_2(module: str, env: dict[str, str], args: list[str], name: str) -> None:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_")}
    proc = subprocess.run([sys.executable, "-m", module, *args], env={**clean, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=scaled(60))
    assert proc.returncode == 2 and name in proc.stderr, (proc.returncode, proc.stderr[-2000:])
