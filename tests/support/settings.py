"""Checking that a service refuses bad settings at start: exit status 2 and a message naming the setting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from framecast.settings import load_settings


def refusal(settings_cls: type[Any], argv: Sequence[str], env: Mapping[str, str], prog: str,
            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """What loading `settings_cls` from `argv` and `env` prints on stderr; fails unless it exits with 2."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        load_settings(settings_cls, list(argv), prog=prog)
    assert exc.value.code == 2
    return capsys.readouterr().err
