"""Server CPU per HTTP request and per WebSocket upgrade: the edge's h11 + guard against httptools.

The edge runs h11 because httptools has no header size limit (docs/security.md). This measures what that
costs: the real edge app (`create_app`, `uvicorn_config`), once as shipped and once with uvicorn's httptools,
alternating twice; CPU time of the server process from /proc (psutil) per request.

    .venv/bin/python -m tools.measure_http_parsers
"""

from __future__ import annotations

import base64
import http.client
import multiprocessing
import os
import socket
import time

import psutil  # type: ignore[import-untyped]

VARIANTS = ("h11+guard", "httptools", "h11+guard", "httptools")


def serve(port: int, variant: str, redis_url: str) -> None:
    import uvicorn

    from framecast.edge.__main__ import uvicorn_config
    from framecast.edge.app import create_app
    from framecast.edge.settings import EdgeSettings

    settings = EdgeSettings(redis_url=redis_url, port=port, log_level="warning")
    config = uvicorn_config(create_app(settings), settings)
    if variant == "httptools":
        config.http, config.ws = "httptools", "websockets-sansio"
    uvicorn.Server(config).run()


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def upgrade(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET /ws/nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)


def main() -> None:
    from framecast.dev.embedded import EmbeddedRedis, free_port

    with EmbeddedRedis() as redis:
        for variant in VARIANTS:
            port = free_port()
            p = multiprocessing.Process(target=serve, args=(port, variant, redis.url))
            p.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            proc = psutil.Process(p.pid)
            conn = http.client.HTTPConnection("127.0.0.1", port)
            for _ in range(100):
                conn.request("GET", "/healthz")
                conn.getresponse().read()
            c0, n = cpu_s(proc), 2000
            for _ in range(n):
                conn.request("GET", "/healthz")
                conn.getresponse().read()
            keep_alive = (cpu_s(proc) - c0) / n * 1e6
            conn.close()
            c0, m = cpu_s(proc), 500
            for _ in range(m):
                conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
            fresh = (cpu_s(proc) - c0) / m * 1e6
            c0, k = cpu_s(proc), 300
            for _ in range(k):
                upgrade(port)  # to an unknown stream: accepted, then closed 4004
            ws = (cpu_s(proc) - c0) / k * 1e6
            print(f"{variant}: keep-alive GET {keep_alive:.0f} us, new-connection GET {fresh:.0f} us, "
                  f"WebSocket upgrade {ws:.0f} us (server CPU per request)", flush=True)
            p.terminate()
            p.join()


if __name__ == "__main__":
    main()
