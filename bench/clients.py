"""Measuring viewers, one per system, run as a subprocess (inside the netns).

Each client connects, reads frames for a bounded time and writes a JSON record
file: per frame the frame id, receive time (time.time()), wire bytes and the
capture time when the message carries a usable one.  Summaries are computed
by `bench.metrics` from these records, never here.

Run: ``python -m bench.clients --system seed-optimized --url ws://H:P/ws/x
--duration 10 --out records.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.constants import (
    FRAMECAST,
    SEED_HEADER_FORMAT,
    SEED_HEADER_SIZE,
    SEED_OPTIMIZED,
    SEED_ORIGINAL,
)

CONNECT_TIMEOUT_S = 10.0
RECV_POLL_S = 0.5
NO_CAPTURE = -1.0
US_PER_S = 1e6
BENCH_VIEWER_ID = "bench"
# Seed clients used library defaults: permessage-deflate offered (and accepted by uvicorn).
SEED_CLIENT_COMPRESSION = "deflate"


@dataclass(frozen=True)
class FrameRecord:
    """One received frame: ids and times in seconds since the epoch."""

    frame_id: int
    recv_s: float
    capture_s: float  # NO_CAPTURE when the message carries no usable capture time
    wire_bytes: int
    quality: int = 0


@dataclass
class ClientRun:
    """Everything one client saw during its run."""

    system: str
    url: str
    connect_s: float = 0.0
    connected_s: float = 0.0
    end_s: float = 0.0
    error: str = ""
    frames: list[FrameRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(obj: dict[str, Any]) -> ClientRun:
        frames = [FrameRecord(**f) for f in obj.pop("frames")]
        return ClientRun(frames=frames, **obj)


def parse_seed_binary(message: bytes, recv_s: float) -> FrameRecord:
    """seed-optimized: '!Ifd' header (the float32 timestamp is not usable)."""
    frame_id, _timestamp_f32, _size = struct.unpack_from(SEED_HEADER_FORMAT, message)
    return FrameRecord(frame_id, recv_s, NO_CAPTURE, len(message))


def parse_seed_json(message: str, recv_s: float) -> FrameRecord:
    """seed-original: JSON text with base64 JPEG and a float64 timestamp."""
    obj = json.loads(message)
    return FrameRecord(int(obj["frame_id"]), recv_s, float(obj["timestamp"]), len(message), int(obj["quality"]))


async def _receive_loop(ws: ClientConnection, run: ClientRun, deadline: float, system: str) -> None:
    while time.monotonic() < deadline:
        try:
            message = await asyncio.wait_for(ws.recv(), RECV_POLL_S)
        except TimeoutError:
            continue
        recv_s = time.time()
        if system == SEED_OPTIMIZED and isinstance(message, bytes):
            if len(message) >= SEED_HEADER_SIZE:
                run.frames.append(parse_seed_binary(message, recv_s))
        elif system == SEED_ORIGINAL and isinstance(message, str):
            run.frames.append(parse_seed_json(message, recv_s))


# --- FRAMECAST INTEGRATION ------------------------------------------------------
async def run_framecast_client(url: str, duration_s: float) -> ClientRun:
    """Measure framecast with its own client library (framecast.client), defaults kept:
    no permessage-deflate, tier "auto", acks as frames are consumed.  Capture time
    comes from the 40-byte little-endian header (u64 µs)."""
    from framecast import client as framecast_client
    from framecast import constants as framecast_constants

    run = ClientRun(system=FRAMECAST, url=url, connect_s=time.time())
    subscription = framecast_client.connect(url, reconnect=False, client_id=BENCH_VIEWER_ID)
    try:
        async with subscription as frames:
            run.connected_s = time.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    async for frame in frames:
                        run.frames.append(
                            FrameRecord(
                                frame.frame_id,
                                time.time(),
                                frame.capture_us / US_PER_S,
                                framecast_constants.HEADER_SIZE + len(frame.payload),
                                frame.quality,
                            )
                        )
    except framecast_client.ClientError as exc:
        run.error = f"framecast client: {exc}"
    finally:
        run.end_s = time.time()
    return run


async def run_client(system: str, url: str, duration_s: float) -> ClientRun:
    """Connect to ``url`` and record frames for ``duration_s`` seconds."""
    if system == FRAMECAST:
        return await run_framecast_client(url, duration_s)
    run = ClientRun(system=system, url=url, connect_s=time.time())
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            ws = await connect(url, max_size=None, compression=SEED_CLIENT_COMPRESSION)
    except (OSError, TimeoutError, ConnectionClosed) as exc:
        run.error = f"connect failed: {exc!r}"
        run.end_s = time.time()
        return run
    run.connected_s = time.time()
    try:
        await _receive_loop(ws, run, time.monotonic() + duration_s, system)
    except ConnectionClosed as exc:
        run.error = f"connection closed: {exc!r}"
    finally:
        run.end_s = time.time()
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await ws.close()
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", required=True, choices=[SEED_ORIGINAL, SEED_OPTIMIZED, FRAMECAST])
    parser.add_argument("--url", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    run = asyncio.run(run_client(args.system, args.url, args.duration))
    args.out.write_text(json.dumps(run.to_json()))


if __name__ == "__main__":
    main()
