"""The viewer page against an edge with auth on, in real headless Chromium: the token field, what assistive
technology is told (live regions), contrast of the error state, and the reload button of fatal errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from framecast.edge.auth import make_token
from tests.integration.client.stack import EDGE_ARGS, Stack
from tests.support.procs import edge_service, service_port, wait_http
from tests.support.timing import scaled

pytestmark = pytest.mark.browser
SECRET = "page-secret-0123456789abcdef012345"

# WCAG 2 contrast of an element's text on its background (opaque colours; alpha composited over black)
CONTRAST = """(sel) => {
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  const over = (c, under) => c.length < 4 ? c.slice(0, 3)
                                          : c.slice(0, 3).map((v, i) => v * c[3] + under[i] * (1 - c[3]));
  const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  const st = getComputedStyle(document.querySelector(sel));
  const bg = over(rgb(st.backgroundColor), [0, 0, 0]);
  const fg = over(rgb(st.color), bg);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


@pytest.fixture(scope="module")
def auth_url(stack: Stack) -> Iterator[str]:
    edge = edge_service(stack.redis.url, *EDGE_ARGS, "--auth-secret", SECRET, name="edge-page-auth")
    edge.start(stack.log_dir)
    try:
        url = f"http://127.0.0.1:{service_port(edge)}"
        wait_http(url + "/healthz", 60, edge)
        yield url
    finally:
        edge.stop()


def wait_live(page: Any, frames: int = 3) -> dict[str, Any]:
    page.wait_for_function(f"() => {{ const s = window.framecastStats; return s && s.framesDrawn >= {frames} "
                           "&& s.state === 'live'; }", timeout=scaled(30) * 1000)
    return page.evaluate("window.framecastStats")  # type: ignore[no-any-return]


def test_refused_viewer_is_told_and_can_give_a_token(auth_url: str, page: Any) -> None:
    page.goto(auth_url + "/?stream=demo")
    page.wait_for_selector('#state[data-state="error"]', timeout=scaled(20) * 1000)
    banner = page.locator("#banner")
    assert banner.is_visible() and "not allowed to watch 'demo'" in banner.inner_text()
    # announced: the banner of a fatal error is an alert, the state pill a polite status
    assert banner.get_attribute("role") == "alert" and banner.get_attribute("aria-live") == "assertive"
    assert page.get_attribute("#state", "aria-live") == "polite" and page.get_attribute("#state", "role") == "status"
    assert page.locator("#reload").is_visible()
    # the token field appears, focused, labelled
    assert page.locator("#token-form").is_visible()
    assert page.evaluate("document.activeElement.id") == "token"
    assert page.evaluate("document.getElementById('token').labels[0].textContent") == "token"
    # WCAG AA (4.5:1) for the error state's text and the error banner
    for selector in ("#state", "#banner"):
        ratio = page.evaluate(CONTRAST, selector)
        assert ratio >= 4.5, f"{selector}: contrast {ratio:.2f}:1"

    token = make_token(SECRET, ["demo"], ttl_s=600)
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")
    s = wait_live(page)
    assert s["stream"] == "demo"
    assert page.locator("#banner").is_hidden() and page.locator("#reload").is_hidden()
    assert page.evaluate("sessionStorage.getItem('framecast.token')") == token
    assert token not in page.url, "a token never goes in the URL"
    # the stream list is fetched with the token (GET /streams wants it with auth on)
    page.wait_for_function("() => Array.from(document.querySelectorAll('#stream option')).some(o => o.value === "
                           "'demo')", timeout=scaled(15) * 1000)

    # kept for this tab: a reload watches again without typing, the field shows it is set
    page.reload()
    wait_live(page)
    assert page.input_value("#token") == token and page.locator("#token-form").is_visible()
    assert page.page_errors == []


def test_reload_button_of_a_fatal_error_reloads(auth_url: str, page: Any) -> None:
    page.goto(auth_url + "/?stream=demo")
    page.evaluate("sessionStorage.setItem('framecast.token', 'not-a-token')")
    page.reload()
    page.wait_for_selector("#reload", state="visible", timeout=scaled(20) * 1000)
    assert page.input_value("#token") == "not-a-token"
    with page.expect_navigation(timeout=scaled(20) * 1000):
        page.click("#reload")
    page.wait_for_selector('#state[data-state="error"]', timeout=scaled(20) * 1000)
    # a good token recovers without a reload
    page.fill("#token", make_token(SECRET, "*", ttl_s=600))
    page.press("#token", "Enter")
    wait_live(page)
