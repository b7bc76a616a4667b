"""Limits below the ASGI layer: what one TCP connection may cost the edge before and after it is a viewer.

uvicorn gives none of these (httptools has no header limit; no handshake or
idle deadline for a half-sent request; no connection cap; a pong is written
for every ping with no backpressure), so the edge runs uvicorn with the two
protocol classes made here:

- `GuardedHttp` (h11): a connection cap and a per-address cap checked when
  the TCP connection is made, before any byte is parsed (503 and a close);
  the request head bounded in bytes (431) and in time from connecting (408),
  and an HTTP connection between requests closed after `idle_timeout_s`.
- `GuardedWebSocket` (websockets sans-I/O): pings rate-limited (1008), the
  connection cut when its unsent bytes (pongs count) pass `max_unsent_bytes`,
  invalid UTF-8 closed with 1007 quietly (one rate-limited line, no
  traceback). It inherits the connection's slot from `GuardedHttp` at the
  upgrade and gives it back when the socket is gone.

The decisions are small pure objects (`ConnectionLimits`, `connection_cap`,
`HeadLimit`) with unit tests, so that another WebSocket stack can keep them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections import Counter
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from framecast.edge.metrics import EdgeMetrics
from framecast.edge.pacing import TokenBucket
from framecast.edge.proxies import TrustedProxies
from framecast.edge.settings import EdgeSettings
from framecast.logs import RateLimitedLog

log = logging.getLogger("framecast.edge.guard")

FD_CHECK_INTERVAL_S = 5.0
FD_RESERVE = 128  # fds kept for Redis connections, bus readers, the metrics port, files and the listener
PING_BURST = 10
CLOSE_INVALID_UTF8 = 1007
CLOSE_POLICY = 1008


def connection_cap(configured: int, fd_limit: int, reserve: int = FD_RESERVE) -> int:
    """Most open client connections: the setting, lowered so the process keeps fds for its own work.

    Reaching RLIMIT_NOFILE makes accept() fail with EMFILE, which uvicorn's loop reports nowhere
    and which stops every new viewer, silently: the cap refuses (and counts, and logs) first.
    """
    reserve = min(reserve, fd_limit // 2)
    return max(1, min(configured, fd_limit - reserve))


def fd_pressure(used: int, limit: int, ratio: float = 0.9) -> bool:
    """True when `used` fds are past `ratio` of the process's limit."""
    return limit > 0 and used > ratio * limit


class ConnectionLimits:
    """Open connections in total and per client address (pure bookkeeping, no sockets)."""

    def __init__(self, max_total: int, per_address: int, trusted: TrustedProxies | None = None) -> None:
        self.max_total, self.per_address = max_total, per_address
        self.trusted = trusted or TrustedProxies()
        self.total = 0
        self.by_address: Counter[str] = Counter()

    def admit(self, address: str) -> str | None:
        """Take a slot for a new connection from `address`; the refusal reason when there is none."""
        if self.total >= self.max_total:
            return "connection_cap"
        # a trusted proxy carries many clients: they are limited per address after X-Forwarded-For
        if self.per_address and self.by_address[address] >= self.per_address and not self.trusted.trusts(address):
            return "per_ip_connections"
        self.total += 1
        self.by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


class HeadLimit:
    """Bytes of one request head (request line + headers) received so far, against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0

    def add(self, n: int) -> bool:
        """Count `n` more bytes of the head; False once it is over the limit."""
        self.received += n
        return self.received <= self.limit

    def done(self) -> None:
        self.received = 0


REFUSED = {  # status line and body of each refusal before the request is parsed
    "connection_cap": (503, b"Service Unavailable", b"too many connections, try again later\n"),
    "per_ip_connections": (503, b"Service Unavailable", b"too many connections from this address\n"),
    "header_too_large": (431, b"Request Header Fields Too Large", b"request head too large\n"),
    "handshake_timeout": (408, b"Request Timeout", b"request head not received in time\n"),
}


def refusal(reason: str) -> bytes:
    status, phrase, body = REFUSED[reason]
    return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\nretry-after: 5\r\n\r\n%s" % (status, phrase, len(body), body))


class ConnectionGuard:
    """The limits of one edge process, shared by all its connections (one per app)."""

    def __init__(self, settings: EdgeSettings, metrics: EdgeMetrics, trusted: TrustedProxies,
                 fd_limit: int | None = None) -> None:
        self.settings, self.metrics = settings, metrics
        self.fixed_fd_limit = fd_limit
        self.limits = ConnectionLimits(settings.max_connections, settings.connections_per_ip, trusted)
        self.fd_limit = 0
        self.refresh_cap()
        if self.limits.max_total < settings.max_connections:
            log.info("connection cap %d (FRAMECAST_MAX_CONNECTIONS %d lowered to fit the fd limit %d)",
                     self.limits.max_total, settings.max_connections, self.fd_limit)
        metrics.connections.set_function(lambda: self.limits.total)
        self._refusals = RateLimitedLog(log, "connections refused", interval=10.0)
        self._cuts = RateLimitedLog(log, "connections cut for client errors", interval=10.0)
        self._fds = RateLimitedLog(log, "file descriptors nearly exhausted", interval=10.0)
        self._next_fd_check = 0.0

    def refresh_cap(self) -> None:
        """Fit the cap to the fd limit now (one getrlimit call: an operator may change the limit at run time)."""
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if self.fixed_fd_limit is None \
            else self.fixed_fd_limit
        if fd_limit != self.fd_limit:
            self.fd_limit = fd_limit
            self.limits.max_total = connection_cap(self.settings.max_connections, fd_limit)
            self.metrics.connection_limit.set(self.limits.max_total)

    def check_fds(self, now: float | None = None) -> None:
        """Once in a while (the hub's tick): warn when the process's fds near its limit, whatever holds them
        (accept() failing with EMFILE is reported nowhere by the event loop)."""
        now = time.monotonic() if now is None else now
        if now < self._next_fd_check:
            return
        self._next_fd_check = now + FD_CHECK_INTERVAL_S
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError:
            return
        if fd_pressure(used, self.fd_limit):
            self._fds.event(f"{used}_of_{self.fd_limit}_in_use")

    def refused(self, reason: str) -> None:
        self.metrics.connections_refused.labels(reason).inc()
        self._refusals.event(reason)

    def cut(self, reason: str) -> None:
        self.metrics.connections_cut.labels(reason).inc()
        self._cuts.event(reason)

    def protocols(self) -> tuple[type[GuardedHttp], type[GuardedWebSocket]]:
        """uvicorn's `http` and `ws` protocol classes bound to this guard."""
        from framecast.edge.wsconn import ViewerProtocol  # the guarded protocol with the edge's own frame path

        ws = type("EdgeWebSocket", (ViewerProtocol,), {"guard": self})
        http = type("EdgeHttp", (GuardedHttp,), {"guard": self})
        return http, ws


class GuardedHttp(H11Protocol):
    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slot: str | None = None  # the address whose connection slot this connection holds
        self.refused = False
        self.upgraded = False
        self.head = HeadLimit(self.guard.settings.max_header_bytes)
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        self.guard.refresh_cap()
        why = self.guard.limits.admit(address)
        if why is not None:
            self._refuse(why)
            return
        self.slot = address
        self._arm(self.guard.settings.handshake_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.slot is not None:
            self.guard.limits.release(self.slot)
            self.slot = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # draining what the client sent before our refusal, until it closes
        if self.conn.their_state is h11.IDLE and not self.head.add(len(data)):
            self._refuse("header_too_large")
            return
        super().data_received(data)
        if not self.upgraded and self.conn.their_state is not h11.IDLE:
            self.head.done()  # the head is complete: the request runs under its own rules
            self._disarm()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self.upgraded = True
        self._disarm()
        super().handle_websocket_upgrade(event)
        proto = self.transport.get_protocol()
        if isinstance(proto, GuardedWebSocket):
            proto.slot, self.slot = self.slot, None  # the WebSocket gives the slot back when it is gone

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.guard.settings.idle_timeout_s)  # the next request head within this, or closed

    def _refuse(self, reason: str) -> None:
        """Answer `reason`'s status and close after the client stops sending (a close with unread data
        would reset the connection before the client reads the answer); abort after a second."""
        self._disarm()
        self.refused = True
        self.guard.refused(reason)
        transport = self.transport
        transport.write(refusal(reason))
        if reason in ("connection_cap", "per_ip_connections"):
            transport.close()  # refused as it connects (nothing read yet): its fd is needed now
        elif transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()
        self.deadline = self.loop.call_later(1.0, transport.abort)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        if self.transport.is_closing() or self.upgraded:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is still being written: not idle
        if self.head.received:
            self._refuse("handshake_timeout")  # a request head started and never finished
            return
        self.transport.close()  # idle between requests, or never sent a byte


class GuardedWebSocket(WebSocketsSansIOProtocol):
    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slot: str | None = None
        settings = self.guard.settings
        self.pings = TokenBucket(settings.ping_rate, PING_BURST, _now_us())
        self.max_unsent = settings.max_unsent_bytes

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.slot is not None:
            self.guard.limits.release(self.slot)
            self.slot = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        transport = self.transport
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # the WebSocket parser refused the request (a header line over 8 KiB, too many headers): its
            # 400 answer is queued, but uvicorn only writes answers to requests it parsed. Send it, close.
            self.guard.refused("bad_handshake")
            transport.write(b"".join(self.conn.data_to_send()))
            transport.close()
            return
        if not transport.is_closing() and transport.get_write_buffer_size() > self.max_unsent:
            self.guard.cut("unsent_budget")  # it does not read what it asks for (pongs, frames)
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})
            transport.abort()

    def handle_ping(self) -> None:
        if self.close_sent:
            self.conn.data_to_send()  # the rest of a batch read after the close: no pongs
            return
        if self.pings.take(_now_us()):
            super().handle_ping()
            return
        self.conn.data_to_send()  # the queued pong is not sent
        self.guard.cut("ping_flood")
        self._fail(CLOSE_POLICY, "too many pings")

    def send_receive_event_to_app(self) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                self.queue.put_nowait({"type": "websocket.receive", "text": data.decode()})
            except UnicodeDecodeError:
                self.guard.cut("invalid_utf8")  # a client error: one summary line, no traceback
                self._fail(CLOSE_INVALID_UTF8, "invalid UTF-8 in a text message")
                return
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _fail(self, code: int, reason: str) -> None:
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()


def _now_us() -> int:
    return time.monotonic_ns() // 1000
