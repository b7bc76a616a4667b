"""A bad edge setting stops start-up with exit code 2 naming the env var and the flag."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("flag,value,name", [
    ("--queue-size", "9", "FRAMECAST_QUEUE_SIZE"),
    ("--allowed-origins", "evil.example", "FRAMECAST_ALLOWED_ORIGINS"),
    ("--metrics-port", "8000", "FRAMECAST_METRICS_PORT"),
    ("--latency-target-ms", "-1", "FRAMECAST_LATENCY_TARGET_MS"),
])
def test_bad_setting_exits_2_naming_it(flag: str, value: str, name: str) -> None:
    r = subprocess.run([sys.executable, "-m", "framecast.edge", flag, value], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and name in r.stderr and flag in r.stderr, r.stderr
