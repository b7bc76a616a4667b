"""Viewer access control: HS256 tokens naming the streams a viewer may watch, and Origin checks.

A token is a JWT signed with the edge's shared secret (HS256) carrying
`exp` (required), optionally `nbf`/`iat`/`sub`, and `streams`: a list of
stream names, or `"*"` for every stream. It travels in the viewer's first
message (`hello.token`), in an `Authorization: Bearer` header, or as a
WebSocket subprotocol `bearer.<token>` (the only header a browser can set),
never in the URL, which ends up in access logs. HTTP routes that serve
stream data (`/streams`, and `/metrics` on the main port) take the same
token in an `Authorization: Bearer` header.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
SUBPROTOCOL = "framecast.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."
LEEWAY_S = 5


class AuthError(Exception):
    """The token is missing, malformed, expired, badly signed, or not for this stream."""


@dataclass(frozen=True, slots=True)
class Grant:
    subject: str
    streams: frozenset[str] | None  # None = every stream
    expires: int

    def allows(self, stream: str) -> bool:
        return self.streams is None or stream in self.streams


def make_token(secret: str, streams: Iterable[str] | str, *, ttl_s: float = 300, subject: str = "viewer",
               now: float | None = None) -> str:
    """Mint a viewer token (tests, tools and a token service use this)."""
    now = time.time() if now is None else now
    claims = {"sub": subject, "streams": streams if isinstance(streams, str) else list(streams),
              "iat": int(now), "exp": int(now + ttl_s)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, stream: str) -> Grant:
    """Check signature, expiry and that the token names `stream`; raise `AuthError` otherwise."""
    grant = verify_grant(secret, token)
    if not grant.allows(stream):
        raise AuthError(f"token not valid for stream {stream!r}")
    return grant


def verify_grant(secret: str, token: str) -> Grant:
    """Check signature and expiry; the grant says which streams the token names. `AuthError` otherwise."""
    if not token:
        raise AuthError("token required")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], leeway=LEEWAY_S,
                            options={"require": ["exp"]})
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("bad token signature") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    raw = claims.get("streams")
    if raw == "*":
        streams = None
    elif isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        streams = frozenset(raw)
    else:
        raise AuthError("token has no 'streams' claim")
    return Grant(subject=str(claims.get("sub", "")), streams=streams, expires=int(claims["exp"]))


def token_from_http(headers: Mapping[str, str]) -> str:
    """The token of an HTTP request: its `Authorization: Bearer` header ('' if none)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def metrics_allowed(secret: str, metrics_token: str, token: str) -> bool:
    """/metrics on the main port with auth on: the metrics token when one is set, else a token for every stream."""
    if not token:
        return False
    if metrics_token:
        return hmac.compare_digest(token.encode(), metrics_token.encode())
    try:
        return verify_grant(secret, token).streams is None
    except AuthError:
        return False


def token_from_headers(headers: dict[str, str], subprotocols: list[str]) -> str:
    """The token of an `Authorization: Bearer` header or a `bearer.<token>` subprotocol ('' if none)."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for proto in subprotocols:
        if proto.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return proto[len(BEARER_SUBPROTOCOL_PREFIX):]
    return ""


def choose_subprotocol(subprotocols: list[str]) -> str | None:
    """The subprotocol to answer with: browsers fail a handshake that offers some and gets none back."""
    if SUBPROTOCOL in subprotocols:
        return SUBPROTOCOL
    others = [p for p in subprotocols if not p.startswith(BEARER_SUBPROTOCOL_PREFIX)]
    return others[0] if others else (subprotocols[0] if subprotocols else None)


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """Browsers always send Origin; non-browser clients may omit it (Origin only guards browsers)."""
    if not allowed or "*" in allowed or origin is None:
        return True
    return origin.rstrip("/") in allowed
