"""The one raw viewer: a WebSocket client done by hand over a plain socket, so a test controls every byte.

For misbehaving viewers (slow readers, resets, floods, malformed frames) and for checks of what the
edge writes on the wire. Frame messages are parsed with `framecast.protocol`, never by byte offsets;
only the WebSocket framing (RFC 6455: server frames unmasked, client frames masked) is done here.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

from framecast.protocol import FrameHeader, decode_header
from tests.support.timing import scaled

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
NO_STATUS = 1005  # a close frame without a code (RFC 6455 7.4.1)


def raw_connect(port: int, source: str | None = None, timeout: float = 10.0,
                rcvbuf: int | None = None) -> socket.socket:
    """A TCP connection to the edge on loopback; `source`: the loopback address it connects from."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        sock.bind((source, 0))
    sock.settimeout(scaled(timeout))
    sock.connect(("127.0.0.1", port))
    return sock


def upgrade_request(port: int, stream: str = "demo", extra: str = "") -> bytes:
    """The HTTP/1.1 upgrade request of a viewer of `stream`; `extra`: more header lines, each ending CRLF."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /ws/{stream} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def read_head(sock: socket.socket) -> bytes:
    """Bytes up to the end of an HTTP response head (or what came before the close), read one at a time so
    nothing after the head is consumed."""
    head = b""
    while b"\r\n\r\n" not in head:
        try:
            chunk = sock.recv(1)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        head += chunk
    return head


def ws_handshake(port: int, stream: str = "demo", *, rcvbuf: int | None = None,
                 source: str | None = None) -> socket.socket:
    """A WebSocket connection done by hand (the test controls every byte read afterwards)."""
    sock = raw_connect(port, source, rcvbuf=rcvbuf)
    sock.sendall(upgrade_request(port, stream))
    head = read_head(sock)
    if not head.endswith(b"\r\n\r\n"):
        raise ConnectionError(f"edge closed during the handshake: {head!r}")
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def flood(sock: socket.socket, blob: bytes, max_bytes: int, seconds: float, *, prefix: bytes = b"") -> int:
    """Send `prefix`, then `blob` again and again as fast as the socket takes it, until `max_bytes` went out,
    `seconds` (scaled) passed or the peer cut the connection; returns the bytes of `blob` sent."""
    sent = 0
    t0 = time.monotonic()
    sock.settimeout(0.5)
    try:
        sock.sendall(prefix)
        while sent < max_bytes and time.monotonic() - t0 < scaled(seconds):
            try:
                sent += sock.send(blob)
            except TimeoutError:
                continue
    except OSError:
        pass  # the peer closed the connection (reset while we were still sending)
    return sent


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, key: bytes | None = None) -> bytes:
    """One masked client frame (payload < 126 bytes); `key`: the mask (random by default)."""
    assert len(payload) < 126
    mask = key if key is not None else os.urandom(4)
    head = bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload)))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_server_frame(buf: bytes) -> tuple[int, bytes, bytes] | None:
    """(opcode, payload, rest) of the first whole (unmasked) server frame in `buf`, or None if incomplete."""
    if len(buf) < 2:
        return None
    n, at = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = struct.unpack_from("!H", buf, 2)[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = struct.unpack_from("!Q", buf, 2)[0], 10
    if len(buf) < at + n:
        return None
    return buf[0] & 0x0F, buf[at:at + n], buf[at + n:]


def close_code_of(payload: bytes) -> int:
    """The status code of a close frame's payload."""
    return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else NO_STATUS


def read_close_code(sock: socket.socket, within: float = 10.0) -> int | None:
    """Read server frames until its close frame; its code (None: the connection ended without one)."""
    buf = b""
    deadline = time.monotonic() + scaled(within)
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        while (parsed := parse_server_frame(buf)) is not None:
            opcode, payload, buf = parsed
            if opcode == OP_CLOSE:
                return close_code_of(payload)
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return None


class RawViewer:
    """A viewer of `stream` on a hand-made WebSocket: reads whole server messages, sends raw client frames."""

    def __init__(self, port: int, stream: str = "demo", *, source: str | None = None,
                 rcvbuf: int | None = None) -> None:
        self.sock = ws_handshake(port, stream, rcvbuf=rcvbuf, source=source)
        self.buf = b""

    def message(self) -> tuple[int, bytes]:
        """The next whole server message other than a close (which fails the test)."""
        while True:
            parsed = parse_server_frame(self.buf)
            if parsed is not None:
                op, data, self.buf = parsed
                assert op in (OP_TEXT, OP_BINARY, OP_PONG), (op, data[:120])  # no close here
                return op, data
            chunk = self.sock.recv(1 << 20)
            assert chunk, "edge closed the connection"
            self.buf += chunk

    def frame(self) -> tuple[FrameHeader, bytes]:
        """The next frame message: its header (decoded by framecast.protocol) and the whole message."""
        while True:
            op, data = self.message()
            if op == OP_BINARY:
                return decode_header(data), data

    def frame_ids(self, n: int) -> list[int]:
        return [self.frame()[0].frame_id for _ in range(n)]

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.sock.sendall(client_frame(opcode, payload, fin=fin))

    def close(self) -> None:
        self.sock.close()
