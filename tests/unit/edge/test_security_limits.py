"""The pure decisions behind the edge's limits (framecast.edge.guard, proxies, quota, auth, logs redaction)."""

from __future__ import annotations

import time

import pytest

from framecast.edge import auth
from framecast.edge.guard import ConnectionLimits, HeadLimit, connection_cap, fd_pressure, refusal
from framecast.edge.metrics import close_label
from framecast.edge.proxies import TrustedProxies
from framecast.edge.quota import PinQuota
from framecast.logs import redact_text, redact_url


def test_connection_cap_keeps_fds_for_the_process() -> None:
    assert connection_cap(4096, 1 << 20) == 4096
    assert connection_cap(4096, 1024) == 1024 - 128
    assert connection_cap(4096, 256) == 128
    assert connection_cap(4096, 16) == 8
    assert connection_cap(10, 1024) == 10


def test_fd_pressure() -> None:
    assert not fd_pressure(230, 256) and fd_pressure(231, 256) and not fd_pressure(5, 0)


def test_connection_limits_total_and_per_address() -> None:
    limits = ConnectionLimits(3, 2, TrustedProxies.parse("10.0.0.1"))
    assert limits.admit("1.1.1.1") is None and limits.admit("1.1.1.1") is None
    assert limits.admit("1.1.1.1") == "per_ip_connections"
    assert limits.admit("2.2.2.2") is None
    assert limits.admit("3.3.3.3") == "connection_cap"
    limits.release("1.1.1.1")
    assert limits.admit("10.0.0.1") is None  # a trusted proxy is not capped per address ...
    limits.release("2.2.2.2")
    assert limits.admit("10.0.0.1") is None
    assert limits.admit("10.0.0.1") == "connection_cap"  # ... only in total
    assert limits.total == 3 and limits.by_address == {"1.1.1.1": 1, "10.0.0.1": 2}


def test_head_limit_counts_until_done() -> None:
    head = HeadLimit(100)
    assert head.add(60) and head.add(40) and not head.add(1)
    head.done()
    assert head.add(100)


def test_refusals_are_complete_http_answers() -> None:
    answer = refusal("header_too_large")
    assert answer.startswith(b"HTTP/1.1 431 ") and b"connection: close" in answer
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert f"content-length: {len(body)}".encode() in answer
    assert refusal("connection_cap").startswith(b"HTTP/1.1 503 ")
    assert refusal("handshake_timeout").startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(("trusted", "peer", "xff", "client"), [
    ("127.0.0.1", "203.0.113.9", "1.2.3.4", "203.0.113.9"),  # an untrusted peer's header is ignored
    ("127.0.0.1", "127.0.0.1", "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # right-most untrusted
    ("127.0.0.1,10.0.0.0/8", "127.0.0.1", "1.2.3.4, 198.51.100.7, 10.1.2.3", "198.51.100.7"),
    ("127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"),  # every hop trusted: the first
    ("127.0.0.1", "127.0.0.1", None, "127.0.0.1"),
    ("*", "172.18.0.5", "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # '*': one hop, not the client-written left
    ("*", "172.18.0.5", "1.2.3.4", "1.2.3.4"),
    ("::1", "::1", "[2001:db8::1]:443", "2001:db8::1"),
    ("127.0.0.1", "127.0.0.1", "198.51.100.7:5555", "198.51.100.7"),
])
def test_client_is_the_rightmost_untrusted_address(trusted: str, peer: str, xff: str | None, client: str) -> None:
    assert TrustedProxies.parse(trusted).client(peer, xff) == client


def test_trusted_proxies_refuse_garbage() -> None:
    with pytest.raises(ValueError, match="'nginx'"):
        TrustedProxies.parse("127.0.0.1, nginx")


def test_pin_quota_counts_distinct_tiers_per_address_and_stream() -> None:
    quota = PinQuota(2)
    assert quota.acquire("a", "demo", "high") and quota.acquire("a", "demo", "mid")
    assert quota.acquire("a", "demo", "high")  # a tier the address pins already is free
    assert not quota.acquire("a", "demo", "low")
    assert quota.acquire("b", "demo", "low") and quota.acquire("a", "other", "low")
    quota.release("a", "demo", "mid")
    assert quota.acquire("a", "demo", "low")
    for tier in ("high", "high", "low"):
        quota.release("a", "demo", tier)
    assert ("a", "demo") not in quota.pins
    assert PinQuota(0).acquire("a", "demo", "x") and PinQuota(0).acquire("a", "demo", "y")


def test_close_labels_are_bounded() -> None:
    assert close_label(1000) == "1000" and close_label(4008) == "4008" and close_label("1006") == "1006"
    assert {close_label(c) for c in range(3000, 5000) if c not in (4001, 4004, 4008, 4400)} == {"other"}


def test_redaction_of_urls_and_log_text() -> None:
    assert redact_url("http://user:pass@host/clip.mp4?api_key=k&x=1") == "http://***@host/clip.mp4?api_key=***&x=***"
    assert redact_url("rtsp://cam.local/live") == "rtsp://cam.local/live"
    tok = auth.make_token("s" * 32, ["demo"])
    lines = [f'127.0.0.1:5 - "WebSocket /ws/demo?token={tok}" [accepted]', f"< authorization: Bearer {tok}",
             f"< sec-websocket-protocol: framecast.v1, bearer.{tok}", f"[('authorization', b'Bearer {tok}')]",
             f'{{"type": "hello", "token": "{tok}"}}', f"raw {tok}", "redis://default:pw@10.0.0.2:6379/0"]
    for line in lines:
        out = redact_text(line)
        assert tok.split(".")[2] not in out and tok.split(".")[1] not in out and "pw@" not in out, out
    assert redact_text("> Authorization: Basic dXNlcjpwYXNz") == "> Authorization: Basic ***"
    assert redact_text("GET /streams HTTP/1.1") == "GET /streams HTTP/1.1"


def test_http_tokens_and_metrics_access() -> None:
    secret = "m" * 32
    assert auth.token_from_http({"authorization": "Bearer abc"}) == "abc"
    assert auth.token_from_http({"authorization": "Basic abc"}) == ""
    every, one = auth.make_token(secret, "*"), auth.make_token(secret, ["demo"])
    assert auth.verify_grant(secret, one).allows("demo") and not auth.verify_grant(secret, one).allows("x")
    assert auth.metrics_allowed(secret, "", every) and not auth.metrics_allowed(secret, "", one)
    assert auth.metrics_allowed(secret, "scrape-token", "scrape-token")
    assert not auth.metrics_allowed(secret, "scrape-token", every) and not auth.metrics_allowed(secret, "", "")
    with pytest.raises(auth.AuthError):
        auth.verify_grant(secret, auth.make_token(secret, ["demo"], now=time.time() - 3600))


def test_stream_names_refuse_a_trailing_newline() -> None:
    from pydantic import ValidationError

    from framecast import constants as C
    from framecast.inference.settings import InferenceSettings

    assert C.STREAM_NAME_RE.match("demo") and not C.STREAM_NAME_RE.match("demo\n")
    assert not C.TIER_NAME_RE.match("high\n")
    with pytest.raises(ValidationError):
        InferenceSettings(stream="demo\n")
