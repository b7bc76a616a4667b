"""Headless Chromium for the viewer-page tests: Debian's /usr/bin/chromium under Playwright, never a
downloaded browser."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("FRAMECAST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def headless_chromium(*, required: bool = False) -> Iterator[Any]:
    """A launched browser, closed at the end. A missing Chromium or Playwright skips the test (a failure
    under CI=true, tests/conftest.py), or fails it at once with `required`."""
    missing = pytest.fail if required else pytest.skip
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (Python package) is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(opener: Any, url: str | None = None) -> tuple[Any, list[str]]:
    """A new page of a browser or browser context, and the list its script errors are collected into;
    it goes to `url` when one is given."""
    page = opener.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if url is not None:
        page.goto(url)
    return page, errors
