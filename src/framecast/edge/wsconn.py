"""The viewer WebSocket below ASGI: uvicorn's sans-I/O protocol for the handshake, our own frames after it.

uvicorn's `websockets-sansio` protocol runs the HTTP upgrade and the ASGI
handshake (Origin, limits and auth checks, close codes before a session
exists). `ViewerProtocol` subclasses it: from the 101 response on, it parses
the client's frames itself (a small parser that handles several acks per read
with no Queue hand-off) and, once the edge attaches a `ViewerIO` handler,
delivers text messages straight to it; an ack in the compact form clients send
(`ACK_PREFIX` + digits + `}`, the usual read) goes to `on_ack_message` as an
integer, read from the unmasked bytes without decoding. Frames go out as bytes framed once per
bus frame (`binary_message`) and written to the socket (`Outlet.write`).

Backpressure: a frame is written only while the socket's unsent bytes are
under the viewer's budget and the transport holds nothing. For an acking
viewer with nothing in flight (every frame acked: the usual case on a fast
link) the kernel holds nothing unsent, so no syscall is needed beyond the
write; otherwise one SIOCOUTQNSD ioctl says. A viewer without acks reads its
unsent bytes in the TCP_INFO it asks for anyway (`path`). (TCP_NOTSENT_LOWAT,
the kernel refusing writes over the budget, was measured here too: the frame
then leaves in budget-sized pieces, each waiting for the event loop, and an
acking viewer's p95 on the 8 Mbit/s, 50 ms link rose from ~140 to ~170 ms.)
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import socket
import struct
import time
from typing import Any, Final, Protocol

from mypy_extensions import mypyc_attr  # tells mypyc (hotpath.py) how to compile a class; a no-op at run time
from websockets.frames import Frame, Opcode

from framecast import constants as C
from framecast.edge.guard import CLOSE_POLICY, GuardedWebSocket

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the pure-Python wheel
    from websockets.utils import apply_mask

SIOCOUTQNSD: Final = 0x894B  # Linux: bytes in the send queue not yet sent (linux/sockios.h)
BUSY: Final = -1  # Outlet.write_frame: the transport still holds bytes
WRITTEN: Final = 1  # Outlet.write_frame: the kernel took the whole frame
PARTLY: Final = 2  # Outlet.write_frame: written, the rest waits in the transport (its drain calls on_writable)
_OP_CONT: Final = 0
_OP_TEXT: Final = 1
_OP_BINARY: Final = 2
_OP_CLOSE: Final = 8
_OP_PING: Final = 9
_OP_PONG: Final = 10
# struct tcp_info (linux/tcp.h) up to tcpi_bytes_retrans (Linux 4.19): the fields path() reads
_TCP_INFO: Final = struct.Struct("=8B24I4Q6I4Q2I2Q")
_TI_BYTES_ACKED: Final = 34
_TI_NOTSENT: Final = 38
_TI_MIN_RTT: Final = 39
_TI_DELIVERY_RATE: Final = 42
_TI_BYTES_SENT: Final = 48
_TI_BYTES_RETRANS: Final = 49
ACK_PREFIX: Final = b'{"type":"ack","id":'  # the compact form clients send an ack in (protocol.encode_control)
_ACK_LEN: Final = len(ACK_PREFIX)
_ACK_MAX_DIGITS: Final = 18  # frame ids are u64 on the wire; an ack of more digits takes the full parser
_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")
# True when this module runs compiled (hotpath.py): the ack parser then walks the bytes itself, which compiled
# costs less than the C helpers' temporary objects and, interpreted, much more
COMPILED: Final = not __file__.endswith(".py")


def compact_ack(data: bytes) -> int:
    """The frame id of `data` when it is exactly one whole masked text frame holding an ack in the compact form
    (`ACK_PREFIX` + 1 to 18 digits + `}`), else -1 (anything else, for the full parser)."""
    n = len(data) - 6
    if not _ACK_LEN + 2 <= n <= _ACK_LEN + 1 + _ACK_MAX_DIGITS or data[0] != 0x81 or data[1] != 0x80 | n:
        return -1
    if not COMPILED:
        payload = apply_mask(data[6:], data[2:6])
        digits = payload[_ACK_LEN:-1]
        if payload.startswith(ACK_PREFIX) and payload[-1] == 0x7D and digits.isdigit():
            return int(digits)
        return -1
    m0, m1, m2, m3 = data[2], data[3], data[4], data[5]
    value = 0
    for i in range(n):
        k = i & 3
        b = data[6 + i] ^ (m0 if k == 0 else m1 if k == 1 else m2 if k == 2 else m3)
        if i < _ACK_LEN:
            if b != ACK_PREFIX[i]:
                return -1
        elif i == n - 1:
            if b != 0x7D:
                return -1
        elif 0x30 <= b <= 0x39:
            value = value * 10 + b - 0x30
        else:
            return -1
    return value


def _header(opcode: int, n: int) -> bytes:
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return bytes((first, 126)) + _U16.pack(n)
    return bytes((first, 127)) + _U64.pack(n)


def binary_message(payload: bytes) -> bytes:
    """One server-to-client binary message (unmasked: the same bytes serve every viewer)."""
    return _header(_OP_BINARY, len(payload)) + payload


def text_message(text: str) -> bytes:
    data = text.encode()
    return _header(_OP_TEXT, len(data)) + data


def close_message(code: int, reason: str = "") -> bytes:
    data = _U16.pack(code) + reason.encode()[:123]
    return _header(_OP_CLOSE, len(data)) + data


class ViewerIO(Protocol):
    """What the protocol calls once a viewer session is attached (all synchronous, on the loop)."""

    def on_text(self, text: str) -> None: ...

    def on_ack_message(self, frame_id: int) -> None:
        """A text message that is an ack in the compact form (`ACK_PREFIX` + digits + `}`)."""

    def on_binary(self) -> None: ...

    def on_writable(self) -> None: ...

    def on_lost(self, code: int) -> None: ...


class Outlet:
    """Writes whole messages to one viewer's socket (`os.write`; what the kernel does not take goes to the
    transport), or, over the unsent budget, nothing: the caller keeps its frame and may replace it."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.fd = -1
        self._buf = array.array("i", [0])
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                self.fd = sock.fileno()
        with contextlib.suppress(AttributeError, ValueError, RuntimeError):
            transport.set_write_buffer_limits(high=0, low=0)  # any buffered byte: pause; drained: resume

    def unsent(self) -> int:
        """Bytes the kernel has not sent yet (SIOCOUTQNSD, Linux), plus the transport's buffer."""
        n: int = self.transport.get_write_buffer_size()
        if self.fd >= 0:
            try:
                fcntl.ioctl(self.fd, SIOCOUTQNSD, self._buf, True)
                n += self._buf[0]
            except OSError:
                self.fd = -1
        return n

    def path(self) -> tuple[int, int, int, int] | None:
        """(bytes in flight or unsent, unsent bytes, delivery rate in bytes/s, min RTT in us) from TCP_INFO and
        the transport; None: unknown.

        One getsockopt, asked only for viewers that do not ack: TCP's own acks then say what the link holds.
        """
        if self.fd < 0:
            return None
        try:
            raw = self.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO,
                                                                     _TCP_INFO.size)
        except (OSError, AttributeError):
            return None
        if len(raw) < _TCP_INFO.size:
            return None  # a kernel older than 4.19: no bytes_sent
        info = _TCP_INFO.unpack_from(raw)
        # sent and not acked, plus written and not sent yet: all of it is ahead of the next frame
        ahead = max(0, info[_TI_BYTES_SENT] - info[_TI_BYTES_RETRANS] - info[_TI_BYTES_ACKED]) + info[_TI_NOTSENT]
        return ahead, info[_TI_NOTSENT] + self.transport.get_write_buffer_size(), info[_TI_DELIVERY_RATE], \
            info[_TI_MIN_RTT]

    def buffered(self) -> int:
        n: int = self.transport.get_write_buffer_size()
        return n

    def write_frame(self, message: bytes, budget: int | None = None) -> int:
        """Write one frame unless the socket is over `budget` unsent bytes (None: the caller knows it is not).

        WRITTEN: the kernel took it all; PARTLY: written, what the kernel did not take waits in the transport,
        whose drain calls `on_writable`; 0: over the budget, nothing written (no event comes: look again later);
        BUSY: nothing written, the transport still holds bytes (its drain calls `on_writable`).
        """
        t = self.transport
        if t.get_write_buffer_size() or t.is_closing():
            return BUSY
        if self.fd < 0:
            t.write(message)
            return PARTLY if t.get_write_buffer_size() else WRITTEN
        if budget is not None:
            try:
                fcntl.ioctl(self.fd, SIOCOUTQNSD, self._buf, True)
            except OSError:
                self.fd = -1
                t.write(message)
                return PARTLY if t.get_write_buffer_size() else WRITTEN
            if self._buf[0] > budget:
                return 0
        try:
            n = os.write(self.fd, message)
        except (BlockingIOError, InterruptedError):
            n = 0  # the kernel's buffer is full: the transport sends it
        except OSError:
            self.fd = -1
            n = 0  # let the transport meet the error and close
        if n < len(message):
            t.write(memoryview(message)[n:] if n else message)  # uvloop may send it at once, or buffer it
            return PARTLY if t.get_write_buffer_size() else WRITTEN
        return WRITTEN

    def write(self, message: bytes) -> None:
        """A control message or a frame that must go (video): through the transport, in order."""
        if not self.transport.is_closing():
            self.transport.write(message)


@mypyc_attr(allow_interpreted_subclasses=True)  # guard.py binds its guard in a subclass
class ViewerProtocol(GuardedWebSocket):
    """uvicorn's WebSocket protocol, with the edge's guard (guard.py), frame parser and output path (module doc).

    After the handshake the guard's rules hold here too: pings rate-limited (1008), the connection cut when
    its unsent bytes pass `max_unsent_bytes`, invalid UTF-8 closed with 1007 quietly.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.viewer: ViewerIO | None = None
        self._rbuf = bytearray()
        self._parts: list[bytes] = []
        self._part_opcode = 0
        self._parts_size = 0
        self._max_size: int = int(self.config.ws_max_size)
        self.lost = False

    # --- the session ------------------------------------------------------
    def attach(self, viewer: ViewerIO) -> None:
        """Deliver messages to `viewer` from now on (those queued during the handshake first)."""
        self.viewer = viewer
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if self.lost:
                break
            if event["type"] == "websocket.receive":
                text = event.get("text")
                if text is not None:
                    viewer.on_text(text)
                else:
                    viewer.on_binary()
            elif event["type"] == "websocket.disconnect":
                viewer.on_lost(int(event.get("code", 1005)))
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.lost:
            viewer.on_lost(1006)

    def close_viewer(self, code: int, reason: str, grace_s: float) -> None:
        """Send a close frame; abort the connection when the viewer does not answer it within `grace_s`."""
        if self.close_sent or self.lost:
            return
        self.close_sent = True
        self.stop_keepalive()
        self.transport.write(close_message(code, reason))
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(grace_s, self.transport.abort)

    # --- transport callbacks ----------------------------------------------
    def data_received(self, data: bytes) -> None:
        viewer = self.viewer  # attached after the handshake
        if viewer is not None:
            # the common read: exactly one ack in the compact form, whole (no decoding)
            frame_id = compact_ack(data)
            if frame_id >= 0 and not self._rbuf and not self.close_sent:
                viewer.on_ack_message(frame_id)
                return
        elif not self.handshake_complete:
            super().data_received(data)  # the HTTP upgrade request
            return
        if self._rbuf:
            self._rbuf += data
            data = bytes(self._rbuf)
            self._rbuf.clear()
        used = self._parse(data)
        transport = self.transport
        if used < len(data) and not transport.is_closing():
            self._rbuf += data[used:]
        if not transport.is_closing() and transport.get_write_buffer_size() > self.max_unsent:
            self.guard.cut("unsent_budget")  # it does not read what it asks for (pongs, frames)
            self._lost_now(1006)
            transport.abort()

    def _lost_now(self, code: int) -> None:
        if self.viewer is not None:
            self.viewer.on_lost(code)
        else:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code})

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.viewer is not None:
            self.viewer.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        super().connection_lost(exc)
        if self.viewer is not None:
            self.viewer.on_lost(1005 if self.handshake_complete else 1006)  # as uvicorn reports a lost socket

    # --- the parser -------------------------------------------------------
    def _parse(self, data: bytes) -> int:
        """Handle every whole frame in `data`; returns how many bytes were used."""
        pos, end = 0, len(data)
        while end - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if end - head < 2:
                    break
                length = _U16.unpack_from(data, head)[0]
                head += 2
            elif length == 127:
                if end - head < 8:
                    break
                length = _U64.unpack_from(data, head)[0]
                head += 8
            if b0 & 0x70 or not b1 & 0x80:
                self._fail(C.CLOSE_PROTOCOL_ERROR, "reserved bits set" if b0 & 0x70 else "unmasked frame")
                return end
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode >= 8 and (length > 125 or not fin):
                self._fail(C.CLOSE_PROTOCOL_ERROR, "bad control frame")
                return end
            if length + self._parts_size > self._max_size:
                self._fail(C.CLOSE_MESSAGE_TOO_BIG, C.CLOSE_REASONS[C.CLOSE_MESSAGE_TOO_BIG])
                return end
            if end - head < 4 + length:
                break
            payload = apply_mask(data[head + 4:head + 4 + length], data[head:head + 4])
            pos = head + 4 + length
            if not self._frame(opcode, bool(fin), payload):
                return end
        return pos

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> bool:
        """One frame; False when the connection is closing (stop parsing)."""
        if opcode in (_OP_TEXT, _OP_BINARY):
            if self._parts:
                self._fail(C.CLOSE_PROTOCOL_ERROR, "expected a continuation frame")
                return False
            if not fin:
                self._part_opcode, self._parts, self._parts_size = opcode, [payload], len(payload)
                return True
            return self._message(opcode, payload)
        if opcode == _OP_CONT:
            if not self._parts:
                self._fail(C.CLOSE_PROTOCOL_ERROR, "unexpected continuation frame")
                return False
            self._parts.append(payload)
            self._parts_size += len(payload)
            if fin:
                whole = b"".join(self._parts)
                self._parts, self._parts_size = [], 0
                return self._message(self._part_opcode, whole)
            return True
        if opcode == _OP_PING:
            if self.close_sent:
                return True  # the rest of a batch read after the close: no pongs
            if not self.pings.take(time.monotonic_ns() // 1000):
                self.guard.cut("ping_flood")
                self._fail(CLOSE_POLICY, "too many pings")
                return False
            self.transport.write(_header(_OP_PONG, len(payload)) + payload)
            return True
        if opcode == _OP_PONG:
            self.handle_pong(Frame(Opcode.PONG, payload))
            return True
        if opcode == _OP_CLOSE:
            self._on_close(payload)
            return False
        self._fail(C.CLOSE_PROTOCOL_ERROR, "unknown opcode")
        return False

    def _message(self, opcode: int, payload: bytes) -> bool:
        if self.close_sent:
            return True  # past our close: discard, keep reading for the viewer's close reply
        viewer = self.viewer
        if opcode == _OP_BINARY:
            if viewer is not None:
                viewer.on_binary()
            else:
                self._to_app({"type": "websocket.receive", "bytes": payload})
            return not self.transport.is_closing()
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self.guard.cut("invalid_utf8")  # a client error: one summary line, no traceback
            self._fail(1007, "invalid UTF-8 in a text message")
            return False
        if viewer is not None:
            viewer.on_text(text)
        else:
            self._to_app({"type": "websocket.receive", "text": text})
        return not self.transport.is_closing()

    def _to_app(self, event: Any) -> None:
        self.queue.put_nowait(event)
        if not self.read_paused:  # during the handshake the app reads one message at a time
            self.read_paused = True
            self.transport.pause_reading()

    def _on_close(self, payload: bytes) -> None:
        code = _U16.unpack_from(payload)[0] if len(payload) >= 2 else 1005
        reason = payload[2:].decode(errors="replace") if len(payload) > 2 else ""
        if self.close_sent:  # the viewer answered our close: the closing handshake is complete
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        self.close_sent = True
        self.stop_keepalive()
        self.transport.write(close_message(code, "") if code != 1005 else _header(_OP_CLOSE, 0))
        if self.viewer is not None:
            self.viewer.on_lost(code)
        else:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol violation: close at once with `code` (the viewer's session, if any, is told)."""
        if self.close_sent:
            self.transport.close()
            return
        self.close_sent = True
        self.stop_keepalive()
        self.transport.write(close_message(code, reason))
        if self.viewer is not None:
            self.viewer.on_lost(code)
        else:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.close()


