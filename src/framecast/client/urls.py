"""Turn what a user types (`http://host:8000`, `ws://host:8000/ws/demo`, `host:8000`) into edge endpoints."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from framecast import constants as C
from framecast.client.errors import ClientError

_WS_SCHEME = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_WS_PATH = re.compile(r"^(?P<prefix>.*?)/ws/(?P<stream>[^/]+)$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one stream of one edge lives."""

    ws_url: str  # ws://host:port/prefix/ws/stream
    http_base: str  # http://host:port/prefix (no trailing slash)
    stream: str
    host: str
    port: int
    secure: bool

    def http_url(self, path: str) -> str:
        return self.http_base + "/" + path.lstrip("/")


def resolve(url: str, stream: str | None = None) -> Endpoint:
    """Parse an edge URL; `stream` overrides nothing silently: a conflict is an error."""
    text = url.strip()
    if not text:
        raise ClientError("empty URL: give the edge address, e.g. http://127.0.0.1:8000")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ClientError(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _WS_SCHEME:
        raise ClientError(f"unsupported URL scheme {parts.scheme!r} in {url!r}: use http://, https://, ws:// or wss://")
    host = parts.hostname
    if not host:
        raise ClientError(f"invalid URL {url!r}: no host")
    secure = _WS_SCHEME[scheme] == "wss"
    if port is None:
        port = 443 if secure else 80
    path = parts.path.rstrip("/")
    url_stream: str | None = None
    match = _WS_PATH.match(path)
    if match:
        path, url_stream = match["prefix"], urllib.parse.unquote(match["stream"])
    if stream and url_stream and stream != url_stream:
        raise ClientError(f"stream {stream!r} conflicts with stream {url_stream!r} in the URL {url!r}")
    name = stream or url_stream or C.DEFAULT_STREAM
    if not C.STREAM_NAME_RE.match(name):
        raise ClientError(f"invalid stream name {name!r}: use 1-64 letters, digits, '_' or '-'")
    netloc = f"[{host}]" if ":" in host else host
    netloc = f"{netloc}:{port}"
    ws_url = f"{_WS_SCHEME[scheme]}://{netloc}{path}/ws/{name}"
    http_base = f"{'https' if secure else 'http'}://{netloc}{path}"
    return Endpoint(ws_url=ws_url, http_base=http_base, stream=name, host=host, port=port, secure=secure)
