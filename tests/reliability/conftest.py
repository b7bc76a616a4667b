"""Fixtures of the reliability tests: a real stack (Valkey, inference, edge) started per test or per module."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from framecast import constants as C
from framecast.embedded import EmbeddedRedis
from framecast.protocol import ClientHello
from tests.reliability.support import STREAM_ARGS, ProcStats, http_text, proc_stats, wait_stream, write_results
from tests.support.procs import Service, edge_service, inference_service, service_port, wait_http


@dataclass
class Stack:
    """Valkey + `python -m framecast.inference` + `python -m framecast.edge`, all real processes."""

    redis: EmbeddedRedis
    log_dir: Path
    edge_args: list[str] = field(default_factory=list)
    inference_args: list[str] = field(default_factory=list)
    inference: Service | None = None
    edge: Service | None = None
    redis_url: str = ""  # the inference's (and the edge's, unless edge_url is set); default: the server's
    edge_url: str = ""

    def start(self) -> Stack:
        url = self.redis_url or self.redis.url
        self.inference = inference_service(url, *STREAM_ARGS, *self.inference_args).start(self.log_dir)
        # a short drain by default so teardown is quick; tests that measure the drain pass their own values
        self.edge = edge_service(self.edge_url or url, "--log-level", "warning", "--drain-delay-s", "0.2",
                                 *self.edge_args).start(self.log_dir)
        wait_http(self.base + "/healthz", 60, self.edge)
        return self

    def restart_inference(self) -> Service:
        assert self.inference is not None
        self.inference.stop()
        self.inference = inference_service(self.redis_url or self.redis.url, *STREAM_ARGS,
                                           *self.inference_args).start(self.log_dir)
        return self.inference

    @property
    def port(self) -> int:
        assert self.edge is not None
        return service_port(self.edge)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, stream: str = C.DEFAULT_STREAM) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{stream}"

    @property
    def edge_pid(self) -> int:
        assert self.edge is not None and self.edge.proc is not None
        return self.edge.proc.pid

    def edge_stats(self) -> ProcStats:
        return proc_stats(self.edge_pid)

    def metrics(self) -> str:
        return http_text(self.base + "/metrics")

    def logs(self) -> str:
        out = []
        for s in (self.inference, self.edge):
            if s is not None:
                out.append(f"--- {s.name}\n{s.log()[-3000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        services = [s for s in (self.edge, self.inference) if s is not None]
        for s in services:  # signal all first, then wait: they shut down in parallel
            if s.alive():
                s.signal(signal.SIGCONT)  # a test may have SIGSTOPped it
                s.signal(signal.SIGTERM)
        for s in services:
            s.stop()


StackFactory = Callable[..., Stack]


@contextlib.contextmanager
def stack_running(log_dir: Path, *, edge_args: list[str] | None = None, inference_args: list[str] | None = None,
                  maxmemory: str = "64mb", hello: ClientHello | None = None) -> Iterator[Stack]:
    """One stack for a module of tests (started once, stream announced, stopped at the end)."""
    redis = EmbeddedRedis(maxmemory=maxmemory).start()
    stack = Stack(redis, log_dir, list(edge_args or []), list(inference_args or []))
    try:
        stack.start()
        asyncio.run(wait_stream(stack.ws(), hello=hello))
        yield stack
    finally:
        with contextlib.suppress(Exception):
            stack.stop()
        redis.stop()


@pytest.fixture
def make_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StackFactory]:
    """Start stacks inside a test: `make_stack(edge_args=[...], inference_args=[...], maxmemory=...)`."""
    started: list[Stack] = []
    servers: list[EmbeddedRedis] = []

    def make(*, edge_args: list[str] | None = None, inference_args: list[str] | None = None,
             maxmemory: str = "64mb", redis: EmbeddedRedis | None = None) -> Stack:
        if redis is None:
            redis = EmbeddedRedis(maxmemory=maxmemory).start()
            servers.append(redis)
        stack = Stack(redis, tmp_path, list(edge_args or []), list(inference_args or []))
        started.append(stack)
        return stack.start()

    try:
        yield make
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for s in started:
                print(s.logs())
        for s in reversed(started):
            with contextlib.suppress(Exception):
                s.stop()
        for r in servers:
            r.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.when == "call":
        for path in write_results(item.nodeid, rep.passed):  # FRAMECAST_RECORD_RESULTS=1 only
            print(f"[reliability] wrote {path}")
