"""Fixtures for the deployment tests: the Debian binaries they need, skipped by name when missing."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.native_stack import NativeStack

ROOT = Path(__file__).resolve().parents[2]
# the environment of `docker-compose config`: Grafana's password is a secret file, no variable needed
COMPOSE_ENV = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
# the compose stack test needs the Docker engine `make compose-test` starts: collected only there
collect_ignore = [] if os.environ.get("FRAMECAST_COMPOSE_TEST") == "1" else ["test_compose_stack.py"]


def require_binary(name: str, package: str) -> str:
    """Path of `name`, or skip the test saying which Debian package provides it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {package})")
    return path


@pytest.fixture(scope="session")
def docker_compose() -> str:
    return require_binary("docker-compose", "docker-compose")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool", "prometheus")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_binary("prometheus", "prometheus")


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_binary("nginx", "nginx")


SMALL_SOURCE = ["--width", "640", "--height", "360", "--fps", "15"]


@contextlib.contextmanager
def replicas_behind_nginx(edges: int) -> Iterator[NativeStack]:
    """The compose topology run natively: `edges` edge replicas behind nginx, Prometheus scraping them, a small
    source; its logs printed if the test fails, everything stopped and removed at the end."""
    stack = NativeStack(edges=edges, with_nginx=True, inference_args=SMALL_SOURCE)
    stack.start()
    try:
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        stack.cleanup()
