"""The edge's own WebSocket path after the handshake (edge/wsconn.py), seen from a raw socket.

Several messages in one TCP segment, a message split across segments and a
fragmented message all reach the session; the frames it writes are whole
binary messages carrying the bus bytes; per-viewer counts show on /metrics
while the viewer is still connected.
"""

from __future__ import annotations

import json
import time

from tests.support.metrics import metric
from tests.support.procs import EdgeProcess
from tests.support.rawws import RawViewer, client_frame
from tests.support.timing import scaled


def test_acks_batched_split_and_fragmented_all_count(edge: EdgeProcess) -> None:
    before = metric(edge.metrics(), "framecast_edge_control_messages_total", type="ack")
    v = RawViewer(edge.port)
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
            counted = metric(edge.metrics(), "framecast_edge_control_messages_total", type="ack") - before
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
