"""The rate-limited summary line and the redacted settings error."""

from __future__ import annotations

import logging

import pytest

from framecast.edge.settings import EdgeSettings
from framecast.logs import RateLimitedLog
from framecast.settings import load_settings


def test_summary_window_is_what_the_counts_cover(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("t.ratelimit"), "drops", interval=10.0)
    with caplog.at_level(logging.WARNING, logger="t.ratelimit"):
        log.event("slow", now=5000.0)  # first event: logged at once, covering no time yet
        log.event("slow", now=5003.0)
        log.event("full", now=5004.0)
        log.event("slow", now=5012.0)  # 12 s after the last summary: the counts cover 5003..5012
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["drops in the last 0.0s: slow=1", "drops in the last 9.0s: full=1, slow=2"]


def test_bad_url_setting_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRAMECAST_REDIS_URL", "redis+sentinel://user:hunter2@s1:26379")  # no master name
    with pytest.raises(SystemExit) as exc:
        load_settings(EdgeSettings, [])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "FRAMECAST_REDIS_URL" in err
    assert "hunter2" not in err
