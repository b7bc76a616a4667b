"""The settings loader: flags over env over defaults; bad values exit 2 naming the setting."""

from __future__ import annotations

import pytest

from framecast.settings import CommonSettings, load_settings
from tests.support.settings import refusal


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAMECAST_REDIS_URL", raising=False)
    s = load_settings(CommonSettings, [])
    assert s.redis_url.startswith("redis://") and s.key_prefix == "framecast:"


def test_flag_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMECAST_KEY_PREFIX", "env:")
    assert load_settings(CommonSettings, []).key_prefix == "env:"
    assert load_settings(CommonSettings, ["--key-prefix", "flag:"]).key_prefix == "flag:"


@pytest.mark.parametrize(("argv", "env", "name"), [
    (["--redis-url", "http://x"], {}, "FRAMECAST_REDIS_URL (--redis-url)"),
    ([], {"FRAMECAST_REDIS_URL": "nope"}, "FRAMECAST_REDIS_URL (--redis-url)"),
    (["--key-prefix", "has space"], {}, "FRAMECAST_KEY_PREFIX (--key-prefix)"),
    ([], {"FRAMECAST_LOG_LEVEL": "loud"}, "FRAMECAST_LOG_LEVEL (--log-level)"),
])
def test_bad_setting_exits_2_naming_it(argv: list[str], env: dict[str, str], name: str,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert name in refusal(CommonSettings, argv, env, "svc", monkeypatch, capsys)


def test_unknown_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        load_settings(CommonSettings, ["--no-such-flag"])
    assert exc.value.code == 2
