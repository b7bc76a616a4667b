"""Fixtures for the deployment tests: the Debian binaries they need, skipped by name when missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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
