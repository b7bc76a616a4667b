"""Small HTTP helpers for the edge's JSON endpoints (stdlib only: the client needs no HTTP library)."""

from __future__ import annotations

import http.client
import json
import os
from typing import Any

from framecast.client.errors import ConnectError
from framecast.client.urls import Endpoint, resolve


class HttpClient:
    """A tiny keep-alive HTTP/1.1 GET client (stdlib), used from worker threads."""

    def __init__(self, ep: Endpoint, timeout: float, token: str = "") -> None:
        cls = http.client.HTTPSConnection if ep.secure else http.client.HTTPConnection
        # a bearer token for edges with auth on (/streams, /metrics); a header, never in the URL
        self.headers = {"Connection": "keep-alive", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.conn = cls(ep.host, ep.port, timeout=timeout)
        self.prefix = ep.http_base.split("://", 1)[1].partition("/")[2]
        self.prefix = "/" + self.prefix if self.prefix else ""

    def get(self, path: str) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self.conn.request("GET", self.prefix + path, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()  # the server closed a kept-alive connection: open a new one once
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.conn.close()


def list_streams(url: str, timeout: float = 10.0, *, token: str = "") -> list[dict[str, Any]]:
    """The edge's `GET /streams`: one dict per stream (name under "stream", tiers, fps, live, viewers)."""
    ep: Endpoint = resolve(url)
    client = HttpClient(ep, timeout, token)
    try:
        status, body = client.get("/streams")
    except OSError as exc:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise ConnectError(f"cannot reach {ep.host}:{ep.port}: {reason}") from None
    except http.client.HTTPException as exc:
        raise ConnectError(f"{ep.host}:{ep.port} does not answer HTTP: {exc!r}") from None
    finally:
        client.close()
    if status == 401:
        raise ConnectError(f"{ep.http_url('/streams')} wants a token (HTTP 401): pass --token or set FRAMECAST_TOKEN",
                           fatal=True, close_code=status)
    if status != 200:
        raise ConnectError(f"{ep.http_url('/streams')} answered HTTP {status}", close_code=status)
    try:
        data = json.loads(body)
    except ValueError:
        raise ConnectError(f"{ep.http_url('/streams')} did not answer JSON") from None
    streams = data.get("streams", []) if isinstance(data, dict) else data
    if not isinstance(streams, list):
        raise ConnectError(f"{ep.http_url('/streams')}: unexpected answer")
    return [s if isinstance(s, dict) else {"stream": str(s)} for s in streams]
