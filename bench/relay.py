"""User-space propagation delay: a TCP relay that holds each chunk for a delay.

netem is not available in this kernel, so one-way delay is added by this relay,
which runs INSIDE the client's network namespace, after the tbf bottleneck (a
relay before the bottleneck would absorb the backlog and hide it from the
server).  Every chunk read in either direction is released ``delay`` seconds
after it arrived, so the round trip through the relay gains 2 x delay.  The
delay line is bounded (chunks and bytes); when full the relay stops reading, so
backpressure still reaches the sender.

Run: ``python -m bench.relay --listen-port 0 --target HOST:PORT --delay-ms 25``;
it prints ``READY <port>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import dataclass

READY_LINE = "READY"
CHUNK_BYTES = 64 * 1024
MAX_CHUNKS_IN_FLIGHT = 512  # bounds the delay line to 32 MiB
LISTEN_HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RelayConfig:
    """Where to listen, where to forward, and the one-way delay in seconds."""

    listen_host: str
    listen_port: int
    target_host: str
    target_port: int
    delay_s: float
    max_lifetime_s: float


def release_time(arrival: float, delay_s: float) -> float:
    """When a chunk that arrived at ``arrival`` may leave the relay."""
    return arrival + delay_s


async def _read_side(
    reader: asyncio.StreamReader,
    line: asyncio.Queue[tuple[float, bytes]],
    delay_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            await line.put((release_time(loop.time(), delay_s), chunk))
    except (ConnectionError, OSError):
        pass
    finally:
        await line.put((release_time(loop.time(), delay_s), b""))


async def _write_side(writer: asyncio.StreamWriter, line: asyncio.Queue[tuple[float, bytes]]) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            due, chunk = await line.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_CHUNKS_IN_FLIGHT)
    await asyncio.gather(_read_side(reader, line, delay_s), _write_side(writer, line))


async def _handle(
    config: RelayConfig,
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
) -> None:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            server_reader, server_writer = await asyncio.open_connection(config.target_host, config.target_port)
    except (OSError, TimeoutError):
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pipe(client_reader, server_writer, config.delay_s),
            _pipe(server_reader, client_writer, config.delay_s),
        )
    finally:
        for writer in (client_writer, server_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def serve(config: RelayConfig) -> None:
    """Accept connections and relay them until ``max_lifetime_s`` elapses."""
    server = await asyncio.start_server(lambda r, w: _handle(config, r, w), config.listen_host, config.listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"{READY_LINE} {port}", flush=True)
    async with server:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(config.max_lifetime_s):
                await server.serve_forever()


def parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--target must be HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen-host", default=LISTEN_HOST)
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--target", required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--max-lifetime-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    try:
        host, port = parse_target(args.target)
    except ValueError as exc:
        sys.exit(str(exc))
    config = RelayConfig(args.listen_host, args.listen_port, host, port, args.delay_ms / 1e3, args.max_lifetime_s)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
