"""Fixtures for edge integration tests: real Valkey, a real edge process, a small frame publisher."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from framecast.dev.embedded import EmbeddedRedis
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def publisher(redis_server: EmbeddedRedis) -> Iterator[Publisher]:
    pub = Publisher(redis_server.url).start()
    yield pub
    pub.stop()


@pytest.fixture(scope="session")
def edge(redis_server: EmbeddedRedis, publisher: Publisher, tmp_path_factory: Any) -> Iterator[EdgeProcess]:
    proc = EdgeProcess(redis_server.url, extra=["--ack-timeout-s", "3", "--reader-grace-s", "1"]).start(
        str(tmp_path_factory.mktemp("edge")))
    yield proc
    proc.stop()


