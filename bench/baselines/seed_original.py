"""Faithful reimplementation of the seed's *original* streaming server.

The design the seed measured at 3.6 FPS on a 21-FPS link: the producer thread
encodes each frame per client (fixed quality 80), base64-encodes it into a
JSON-able dict and blocks on a ``threading.Queue(maxsize=500)`` per client;
the WebSocket handler polls that queue from asyncio with ``get_nowait`` and
``await asyncio.sleep(0.01)``, logs a line per frame and sends JSON text.
FastAPI on uvicorn with default settings (permessage-deflate negotiated).

Run: ``python -m bench.baselines.seed_original --host 127.0.0.1 --port 8001``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import queue
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bench.baselines.common import (
    FrameProducer,
    add_bench_routes,
    configure_logging,
    parse_args,
    serve,
)
from bench.constants import SEED_MESSAGE_TYPE_FRAME, SEED_WS_PATH
from bench.scene import Frame, encode_jpeg

logger = logging.getLogger("streaming_server")

QUEUE_MAXSIZE = 500
POLL_INTERVAL_S = 0.01
JPEG_QUALITY = 80
# The seed blocked forever on a full queue; block in slices so shutdown works.
BLOCKING_PUT_SLICE_S = 0.5
BLOCKED_COUNTER = "producer_blocked_puts"


def frame_message(frame_id: int, timestamp: float, jpeg: bytes, quality: int) -> dict[str, Any]:
    """The seed's JSON frame message with the JPEG as base64 text (+33 %)."""
    return {
        "type": SEED_MESSAGE_TYPE_FRAME,
        "frame_id": frame_id,
        "timestamp": timestamp,
        "quality": quality,
        "frame_data": base64.b64encode(jpeg).decode("utf-8"),
    }


class WebSocketFrameWriter:
    """Per-client writer called by the producer thread, as in the seed."""

    def __init__(
        self,
        client_id: str,
        frame_queue: queue.Queue[dict[str, Any]],
        producer: FrameProducer,
        counters: dict[str, int],
    ) -> None:
        self.client_id = client_id
        self.frame_queue = frame_queue
        self.producer = producer
        self.counters = counters
        self.frame_count = 0

    def __call__(self, frame_id: int, timestamp: float, image: Frame) -> None:
        self.frame_count += 1
        logger.info("WebSocketFrameWriter called for frame %d", self.frame_count)
        message = frame_message(frame_id, timestamp, encode_jpeg(image, JPEG_QUALITY), JPEG_QUALITY)
        while not self.producer.stopping.is_set():
            try:
                self.frame_queue.put(message, timeout=BLOCKING_PUT_SLICE_S)
                break
            except queue.Full:
                self.counters[BLOCKED_COUNTER] += 1
                if self.client_id not in self.producer.sink_keys():
                    return
        logger.info("Frame %d queued for client %s", self.frame_count, self.client_id)


def create_app() -> FastAPI:
    producer = FrameProducer()
    counters = {BLOCKED_COUNTER: 0}

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
        frame_queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=QUEUE_MAXSIZE)
        producer.add_sink(client_id, WebSocketFrameWriter(client_id, frame_queue, producer, counters))
        logger.info("Client %s connected", client_id)
        try:
            while True:
                try:
                    message = frame_queue.get_nowait()
                except queue.Empty:
                    await asyncio.sleep(POLL_INTERVAL_S)
                    continue
                logger.info("Sending message type '%s' to %s", message.get("type"), client_id)
                await websocket.send_text(json.dumps(message))
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
