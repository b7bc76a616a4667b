"""Faithful reimplementation of the seed's *optimized* streaming server.

As the seed document describes it: one ``asyncio.Queue(maxsize=50)`` per
client, drained with ``await asyncio.wait_for(queue.get(), timeout=1.0)``;
the producer encodes per client at JPEG quality 80/70/60 chosen by that
client's queue depth (>30 -> 60, >15 -> 70) and drops on ``QueueFull`` with a
warning; binary messages are a 16-byte ``struct.pack('!Ifd', ...)`` header plus
the JPEG; logging every 100th frame; FastAPI on uvicorn with default settings.

Run: ``python -m bench.baselines.seed_optimized --host 127.0.0.1 --port 8000``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bench.baselines.common import (
    FrameProducer,
    add_bench_routes,
    configure_logging,
    parse_args,
    serve,
)
from bench.constants import SEED_HEADER_FORMAT, SEED_WS_PATH
from bench.scene import Frame, encode_jpeg

logger = logging.getLogger("streaming_server_optimized")

QUEUE_MAXSIZE = 50
QUEUE_GET_TIMEOUT_S = 1.0
LOG_EVERY_N_FRAMES = 100
DROPS_COUNTER = "drops_queue_full"


def quality_for_depth(queue_size: int) -> int:
    """The seed's adaptive quality: lower JPEG quality as the queue backs up."""
    if queue_size > 30:
        return 60
    if queue_size > 15:
        return 70
    return 80


def pack_frame(frame_id: int, timestamp: float, jpeg: bytes) -> bytes:
    """The seed's binary message: 16-byte '!Ifd' header then the JPEG bytes."""
    header = struct.pack(SEED_HEADER_FORMAT, frame_id, timestamp, len(jpeg))
    return header + jpeg


class WebSocketFrameWriter:
    """Per-client writer called by the producer thread, as in the seed."""

    def __init__(
        self,
        client_id: str,
        queue: asyncio.Queue[bytes],
        loop: asyncio.AbstractEventLoop,
        counters: dict[str, int],
    ) -> None:
        self.client_id = client_id
        self.queue = queue
        self.loop = loop
        self.counters = counters
        self.frame_count = 0

    def __call__(self, frame_id: int, timestamp: float, image: Frame) -> None:
        quality = quality_for_depth(self.queue.qsize())
        message = pack_frame(frame_id & 0xFFFFFFFF, timestamp, encode_jpeg(image, quality))
        self.frame_count += 1
        if self.frame_count % LOG_EVERY_N_FRAMES == 0:
            logger.info("Frame %d queued (quality: %d%%)", self.frame_count, quality)
        # asyncio.Queue is not thread-safe: hand the put to the loop thread.
        self.loop.call_soon_threadsafe(self._enqueue, frame_id, message)

    def _enqueue(self, frame_id: int, message: bytes) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.counters[DROPS_COUNTER] += 1
            logger.warning("Dropping frame %d - queue full", frame_id)


def create_app() -> FastAPI:
    producer = FrameProducer()
    counters = {DROPS_COUNTER: 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        producer.start()
        yield
        producer.stop()

    app = FastAPI(lifespan=lifespan)
    add_bench_routes(app, producer, counters)

    @app.websocket(SEED_WS_PATH)
    async def stream(websocket: WebSocket, client_id: str) -> None:
        await websocket.accept()
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE_MAXSIZE)
        writer = WebSocketFrameWriter(client_id, queue, asyncio.get_running_loop(), counters)
        producer.add_sink(client_id, writer)
        logger.info("Client %s connected", client_id)
        try:
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=QUEUE_GET_TIMEOUT_S)
                except TimeoutError:
                    continue
                await websocket.send_bytes(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            producer.remove_sink(client_id)
            logger.info("Client %s disconnected", client_id)

    return app


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv)
    configure_logging()
    serve(create_app(), args.host, args.port)


if __name__ == "__main__":
    main()
