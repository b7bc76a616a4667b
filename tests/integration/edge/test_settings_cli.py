"""A bad edge setting stops start-up with exit code 2 naming the env var and the flag."""

from __future__ import annotations

import subprocess
import sys

BAD = [
    ("--max-inflight-frames", "99", "FRAMECAST_MAX_INFLIGHT_FRAMES"),
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


def test_removed_queue_size_is_refused() -> None:
    """FRAMECAST_QUEUE_SIZE never changed what was sent (the sender takes the newest frame): it is gone."""
    result = subprocess.run([sys.executable, "-m", "framecast.edge", "--queue-size", "2", "--port", "99999"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unrecognized arguments: --queue-size" in result.stderr, result.stderr
