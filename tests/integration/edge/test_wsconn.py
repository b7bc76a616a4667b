"""The edge's own WebSocket path after the handshake (edge/wsconn.py), seen from a raw socket.

Several messages in one TCP segment, a message split across segments and a
fragmented message all reach the session; the frames it writes are whole
binary messages carrying the bus bytes; per-viewer counts show on /metrics
while the viewer is still connected.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time

from framecast.protocol import decode_frame

from .conftest import EdgeProcess, metric_value, scaled


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    head = bytes(((0x80 if fin else 0) | opcode, 0x80 | len(payload)))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawViewer:
    def __init__(self, edge: EdgeProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", edge.port), timeout=scaled(5))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET /ws/demo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def message(self) -> tuple[int, bytes]:
        """The next whole server message (server frames are unmasked)."""
        while True:
            if len(self.buf) >= 2:
                n, at = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, at = struct.unpack_from("!H", self.buf, 2)[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, at = struct.unpack_from("!Q", self.buf, 2)[0], 10
                if (n < 126 or at > 2) and len(self.buf) >= at + n:
                    op, data, self.buf = self.buf[0] & 0x0F, self.buf[at:at + n], self.buf[at + n:]
                    assert op in (1, 2, 10), (op, data[:120])  # text, binary, pong: no close here
                    return op, data
            chunk = self.sock.recv(1 << 20)
            assert chunk, "edge closed the connection"
            self.buf += chunk

    def frame_ids(self, n: int) -> list[int]:
        ids = []
        while len(ids) < n:
            op, data = self.message()
            if op == 2:
                ids.append(decode_frame(data).header.frame_id)
        return ids


def test_acks_batched_split_and_fragmented_all_count(edge: EdgeProcess) -> None:
    before = metric_value(edge.metrics(), "framecast_edge_control_messages_total", {"type": "ack"})
    v = RawViewer(edge)
    try:
        hello = json.dumps({"type": "hello", "client_id": "raw", "tier": "low"}).encode()

        def ack(frame_id: int) -> bytes:
            return json.dumps({"type": "ack", "id": frame_id}).encode()

        (first,) = v.frame_ids(1)
        v.sock.sendall(client_frame(1, hello) + client_frame(1, ack(first)))  # two messages, one segment
        (second,) = v.frame_ids(1)
        split = client_frame(1, ack(second))
        # two acks in one segment with the start of a third; its rest in a later segment
        v.sock.sendall(client_frame(1, ack(second)) + client_frame(1, ack(second)) + split[:5])
        time.sleep(0.05)
        v.sock.sendall(split[5:])
        (third,) = v.frame_ids(1)
        whole = ack(third)  # a fragmented message: a text frame without FIN, then a continuation
        v.sock.sendall(client_frame(1, whole[:7], fin=False) + client_frame(0, whole[7:]))
        deadline = time.monotonic() + scaled(5)
        counted = 0.0
        while time.monotonic() < deadline:  # counted while the viewer is still connected (its own ints)
            counted = metric_value(edge.metrics(), "framecast_edge_control_messages_total", {"type": "ack"}) - before
            if counted >= 5:
                break
            time.sleep(0.05)
        assert counted == 5
        # a ping is answered with a pong carrying its payload, between frames
        v.sock.sendall(client_frame(9, b"pp"))
        while True:
            op, data = v.message()
            if op == 10:
                assert data == b"pp"
                break
    finally:
        v.sock.close()
