"""Fixtures of the reliability tests: a real stack (Valkey, inference, edge) started per test or per module."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framecast.dev.embedded import EmbeddedRedis
from framecast.protocol import ClientHello
from tests.reliability.support import STREAM_ARGS, ProcStats, proc_stats, wait_stream, write_results
from tests.support import stack as support_stack


@dataclass
class Stack(support_stack.Stack):
    """The shared stack (tests/support/stack.py) with the reliability defaults: a small source (STREAM_ARGS), a
    quiet edge with a short drain so teardown is quick (tests that measure the drain pass their own values)."""

    def __post_init__(self) -> None:
        self.inference_args = [*STREAM_ARGS, *self.inference_args]
        self.edge_args = ["--log-level", "warning", "--drain-delay-s", "0.2", *self.edge_args]

    def edge_stats(self) -> ProcStats:
        return proc_stats(self.edge_pid)


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
