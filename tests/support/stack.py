"""The one stack launcher: an embedded Valkey, `python -m framecast.inference` and `python -m framecast.edge`,
all real processes, started in order and polled ready against deadlines (tests and benches alike)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from framecast import constants as C
from framecast.dev.embedded import EmbeddedRedis
from tests.support.metrics import scrape
from tests.support.procs import Service, edge_service, inference_service, service_port, wait_http, wait_stream_live


@dataclass
class Stack:
    """Valkey + inference + edge. `start(live=True)` also waits until the edge lists the stream as live."""

    redis: EmbeddedRedis
    log_dir: Path
    edge_args: list[str] = field(default_factory=list)
    inference_args: list[str] = field(default_factory=list)
    inference: Service | None = None
    edge: Service | None = None
    redis_url: str = ""  # the inference's (and the edge's, unless edge_url is set); default: the server's
    edge_url: str = ""
    host: str = ""  # the address the edge binds (its default when empty); clients use 127.0.0.1 unless set
    stream: str = C.DEFAULT_STREAM

    def start(self, *, live: bool = False, timeout: float = 60.0) -> Stack:
        url = self.redis_url or self.redis.url
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.inference = inference_service(url, *self.inference_args, stream=self.stream).start(self.log_dir)
        self.edge = edge_service(self.edge_url or url, *self.edge_args, host=self.host).start(self.log_dir)
        wait_http(self.base + "/healthz", timeout, self.edge)
        if live:
            wait_stream_live(self.base, self.edge, self.inference, stream=self.stream, timeout=2 * timeout)
        return self

    def restart_inference(self) -> Service:
        assert self.inference is not None
        self.inference.stop()
        self.inference = inference_service(self.redis_url or self.redis.url, *self.inference_args,
                                           stream=self.stream).start(self.log_dir)
        return self.inference

    @property
    def port(self) -> int:
        assert self.edge is not None
        return service_port(self.edge)

    @property
    def base(self) -> str:
        return f"http://{self.host or '127.0.0.1'}:{self.port}"

    def ws(self, stream: str = "") -> str:
        return f"ws://{self.host or '127.0.0.1'}:{self.port}/ws/{stream or self.stream}"

    @property
    def edge_pid(self) -> int:
        assert self.edge is not None
        return self.edge.pid

    def metrics(self) -> str:
        return scrape(self.base)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.log()[-3000:]}" for s in (self.inference, self.edge) if s is not None)

    def stop(self) -> None:
        services = [s for s in (self.edge, self.inference) if s is not None]
        for s in services:  # signal all first, then wait: they shut down in parallel
            if s.alive():
                s.signal(signal.SIGCONT)  # a test may have SIGSTOPped it
                s.signal(signal.SIGTERM)
        for s in services:
            s.stop()


@contextlib.contextmanager
def stack_running(log_dir: Path, *, edge_args: list[str] | None = None, inference_args: list[str] | None = None,
                  maxmemory: str = "64mb", host: str = "", live: bool = True,
                  timeout: float = 60.0) -> Iterator[Stack]:
    """A stack with its own embedded Valkey, stopped (and the Valkey with it) at the end."""
    with EmbeddedRedis(maxmemory=maxmemory) as redis:
        stack = Stack(redis, log_dir, list(edge_args or []), list(inference_args or []), host=host)
        try:
            yield stack.start(live=live, timeout=timeout)
        finally:
            with contextlib.suppress(Exception):
                stack.stop()
