"""Real headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser) against a real stack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.client.stack import Stack, client_stack
from tests.support.browser import headless_chromium, open_page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Stack]:
    with client_stack(tmp_path_factory.mktemp("e2e-stack")) as s:
        yield s


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg, errors = open_page(context)
    pg.page_errors = errors
    try:
        yield pg
    finally:
        context.close()
