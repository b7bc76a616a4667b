"""A real framecast stack for viewer tests: embedded Valkey + inference + edge as processes.

Shared by the client integration tests and the Chromium e2e tests. Readiness is
polled with deadlines (scaled by FRAMECAST_TEST_TIMEOUT_FACTOR), never slept.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framecast import constants as C
from framecast.dev.embedded import EmbeddedRedis, free_port
from tests.support import stack as support_stack
from tests.support.procs import Service, edge_service, inference_service, service_port, wait_http, wait_stream_live

GLASS_TO_GLASS_METRIC = "framecast_edge_glass_to_glass_seconds"  # from framecast.edge.metrics
# a drain short enough for restart tests; a small source keeps this 2-core machine responsive
EDGE_ARGS = ("--drain-delay-s", "0.2", "--drain-timeout-s", "5")


def require_services() -> None:
    for module in ("framecast.edge.__main__", "framecast.inference.__main__"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not there yet")


@dataclass
class Stack(support_stack.Stack):
    """The shared stack (tests/support/stack.py) with an edge that drains quickly (EDGE_ARGS)."""

    def __post_init__(self) -> None:
        self.edge_args = [*EDGE_ARGS, *self.edge_args]

    @property
    def url(self) -> str:
        return self.base

    def start_edge(self, port: int = 0, name: str = "edge", *extra: str) -> Service:
        assert self.inference is not None
        edge = edge_service(self.redis.url, *EDGE_ARGS, *extra, port=port or free_port(), name=name)
        edge.start(self.log_dir)
        wait_ready(f"http://127.0.0.1:{service_port(edge)}", edge, self.inference)
        return edge

    def start_small_source(self, stream: str) -> Service:
        """A cheap second inference service on its own stream (for stall tests)."""
        assert self.edge is not None
        svc = inference_service(self.redis.url, "--width", "320", "--height", "180", "--fps", "15",
                                "--tiers", "small=320x180@60", stream=stream).start(self.log_dir)
        wait_ready(self.url, self.edge, svc, stream=stream)
        return svc


def wait_ready(base: str, edge: Service, inference: Service, stream: str = C.DEFAULT_STREAM) -> None:
    """The edge answers and lists `stream` as live (the inference service is publishing)."""
    wait_http(base + "/healthz", 60, edge)
    wait_stream_live(base, edge, inference, stream=stream, timeout=120)


@contextlib.contextmanager
def client_stack(log_dir: Path) -> Iterator[Stack]:
    require_services()
    with EmbeddedRedis(maxmemory="128mb") as redis:
        stack = Stack(redis, log_dir)
        try:
            yield stack.start(live=True)
        finally:
            stack.stop()
