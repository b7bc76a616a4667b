"""Which proxies the edge trusts, and the client address it takes from X-Forwarded-For.

The client is the right-most address of `X-Forwarded-For` (plus the direct
peer) that is not a trusted proxy: every address left of it was written by
the client itself and proves nothing. Trusted proxies are listed
explicitly (addresses or networks); `*` trusts the direct peer only, one
hop, so even then a client cannot choose its own address by sending the
header (uvicorn's `*` takes the left-most, client-written entry).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()
    any_peer: bool = False  # "*": trust whoever connects, for one hop

    @classmethod
    def parse(cls, spec: str) -> TrustedProxies:
        """`"127.0.0.1, 10.0.0.0/8, ::1"` or `"*"`; raises ValueError naming a bad entry."""
        networks: list[Network] = []
        any_peer = False
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if part == "*":
                any_peer = True
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network (or *)") from None
        return cls(tuple(networks), any_peer)

    def trusts(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False  # a unix socket path or garbage: never a trusted proxy
        return any(addr in net for net in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client address of a connection from `peer` carrying `forwarded_for` (None: no header)."""
        if not forwarded_for or not (self.any_peer or self.trusts(peer)):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        if not hops:
            return peer
        if self.any_peer and not self.trusts(peer):
            return _host(hops[-1])  # one hop: what the direct peer saw
        for hop in reversed(hops):
            host = _host(hop)
            if not self.trusts(host):
                return host
        return _host(hops[0])  # every hop is a trusted proxy: the first one is the client


def _host(hop: str) -> str:
    """An X-Forwarded-For entry without a port (`1.2.3.4:5`, `[::1]:5`); garbage stays as is (it is only a key)."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop[:64]


class ForwardedFor:
    """ASGI middleware: the scope's client (and scheme) from X-Forwarded-For/-Proto of a trusted proxy."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app, self.trusted = app, trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            peer, port = scope["client"]
            forwarded = proto = None
            for name, value in scope.get("headers", ()):
                if name == b"x-forwarded-for":
                    forwarded = value.decode("latin-1") if forwarded is None \
                        else forwarded + "," + value.decode("latin-1")
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").strip().lower()
            if forwarded is not None or proto is not None:
                trusted_peer = self.trusted.any_peer or self.trusted.trusts(peer)
                if trusted_peer:
                    scope = dict(scope)
                    scope["client"] = (self.trusted.client(peer, forwarded), 0 if forwarded else port)
                    if proto in ("http", "https", "ws", "wss"):
                        ws = scope["type"] == "websocket"
                        scope["scheme"] = {"http": "ws", "https": "wss"}.get(proto, proto) if ws else \
                            {"ws": "http", "wss": "https"}.get(proto, proto)
        await self.app(scope, receive, send)
