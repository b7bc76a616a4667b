"""Fixtures of the security suite: one real stack (Valkey, inference, edge with its default limits) per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from framecast.dev.embedded import free_port
from tests.reliability.conftest import Stack, stack_running
from tests.reliability.support import http_text


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The edge as shipped (default limits), behind nothing: what a public port gets. Its metrics are on their
    own port (as deployed), so the test reads them even while an attack fills the connection cap."""
    port = free_port()
    with stack_running(tmp_path_factory.mktemp("security"),
                       edge_args=["--log-level", "info", "--metrics-port", str(port)]) as s:
        s.metrics = lambda: http_text(f"http://127.0.0.1:{port}/metrics")  # type: ignore[method-assign]
        yield s
