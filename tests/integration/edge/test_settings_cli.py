"""A bad edge setting stops start-up with exit code 2 naming the env var and the flag."""

from __future__ import annotations

import subprocess
import sys

BAD = [
    ("--queue-size", "9", "FRAMECAST_QUEUE_SIZE"),
    ("--allowed-origins", "evil.example", "FRAMECAST_ALLOWED_ORIGINS"),
    ("--metrics-port", "8000", "FRAMECAST_METRICS_PORT"),
    ("--latency-target-ms", "-1", "FRAMECAST_LATENCY_TARGET_MS"),
]


def test_bad_settings_exit_2_naming_them() -> None:
    procs = [(flag, name, subprocess.Popen([sys.executable, "-m", "framecast.edge", flag, value],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for flag, value, name in BAD]  # all at once: each start costs an interpreter and imports
    for flag, name, proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and name in err and flag in err, (flag, err)
