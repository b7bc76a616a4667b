from __future__ import annotations

import pytest

from framecast.client import ClientError, resolve


@pytest.mark.parametrize(
    ("url", "stream", "ws_url", "http_base"),
    [
        ("http://127.0.0.1:8000", None, "ws://127.0.0.1:8000/ws/demo", "http://127.0.0.1:8000"),
        ("ws://127.0.0.1:8000/", "cam1", "ws://127.0.0.1:8000/ws/cam1", "http://127.0.0.1:8000"),
        ("https://edge.example/base", None, "wss://edge.example:443/base/ws/demo", "https://edge.example:443/base"),
        ("127.0.0.1:9000", None, "ws://127.0.0.1:9000/ws/demo", "http://127.0.0.1:9000"),
        ("ws://h:1/ws/other", None, "ws://h:1/ws/other", "http://h:1"),
        ("ws://h:1/ws/other", "other", "ws://h:1/ws/other", "http://h:1"),
        ("http://[::1]:8000", None, "ws://[::1]:8000/ws/demo", "http://[::1]:8000"),
    ],
)
def test_resolve(url: str, stream: str | None, ws_url: str, http_base: str) -> None:
    ep = resolve(url, stream)
    assert ep.ws_url == ws_url
    assert ep.http_base == http_base


@pytest.mark.parametrize(
    ("url", "stream", "message"),
    [
        ("ftp://h:1", None, "unsupported URL scheme"),
        ("", None, "empty URL"),
        ("http://h:99999", None, "invalid URL"),
        ("http://h:1", "bad name", "invalid stream name"),
        ("ws://h:1/ws/a", "b", "conflicts"),
        ("http://:80", None, "no host"),
    ],
)
def test_resolve_rejects(url: str, stream: str | None, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        resolve(url, stream)
