from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.client.stack import Stack, client_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with client_stack(tmp_path_factory.mktemp("client-stack")) as s:
        yield s
