"""Token checks, header/subprotocol extraction, Origin rules and edge settings validation."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from framecast.edge import auth
from framecast.edge.settings import EdgeSettings

SECRET = "unit-secret-0123456789abcdef0123456789"


def test_token_round_trip_and_wildcard() -> None:
    g = auth.verify_token(SECRET, auth.make_token(SECRET, ["a", "b"]), "b")
    assert g.allows("a") and not g.allows("c")
    assert auth.verify_token(SECRET, auth.make_token(SECRET, "*"), "anything").streams is None


# tokens are made when the test runs, not at collection: a long suite would expire them first
@pytest.mark.parametrize("make,message", [
    (lambda: "", "required"),
    (lambda: "x.y.z", "invalid token"),
    (lambda: auth.make_token(SECRET, ["a"], now=time.time() - 1000, ttl_s=10), "expired"),
    (lambda: auth.make_token("other-secret-0123456789abcdef012345", ["a"]), "signature"),
    (lambda: auth.make_token(SECRET, ["b"]), "not valid for stream"),
], ids=["missing", "garbage", "expired", "signature", "stream"])
def test_bad_tokens(make: Callable[[], str], message: str) -> None:
    with pytest.raises(auth.AuthError, match=message):
        auth.verify_token(SECRET, make(), "a")


def test_token_sources() -> None:
    assert auth.token_from_headers({"authorization": "Bearer abc"}, []) == "abc"
    assert auth.token_from_headers({}, ["framecast.v1", "bearer.xyz"]) == "xyz"
    assert auth.token_from_headers({"authorization": "Basic abc"}, []) == ""
    assert auth.choose_subprotocol(["bearer.xyz", "framecast.v1"]) == "framecast.v1"
    assert auth.choose_subprotocol([]) is None


def test_origins() -> None:
    allowed = frozenset({"https://a.example"})
    assert auth.origin_allowed("https://a.example/", allowed)
    assert not auth.origin_allowed("https://b.example", allowed)
    assert auth.origin_allowed(None, allowed)  # non-browser clients send no Origin
    assert auth.origin_allowed("https://b.example", frozenset())


def test_settings_defaults_and_parsing() -> None:
    s = EdgeSettings(allowed_origins="https://a.example, http://b.example:8080")
    assert s.port == 8000 and s.host == "127.0.0.1"
    assert s.origins == frozenset({"https://a.example", "http://b.example:8080"})
