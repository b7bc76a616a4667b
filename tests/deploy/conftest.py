"""Fixtures for the deployment tests: the Debian binaries they need, skipped by name when missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# a password for `docker-compose config`: the compose file refuses to parse without one
COMPOSE_ENV = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "test-only-not-a-secret"}


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
