"""The redis exporters against a real server: Debian's real redis_exporter, and tools/redis_exporter.py.

The stand-in only runs where prometheus-redis-exporter is missing (the dashboard test says which ran);
this test holds it to the names and behaviour of the real one, side by side.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tools.native_stack import http_get, redis_exporter_binary, start_redis_exporter

from framecast.dev.embedded import EmbeddedRedis
from tests.support.timing import wait_until


def _samples(port: int) -> dict[str, float]:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("redis_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.mark.parametrize("stand_in", [False, True], ids=["prometheus-redis-exporter", "stand-in"])
def test_exports_real_info_and_redis_down(tmp_path: Path, stand_in: bool) -> None:
    if not stand_in and redis_exporter_binary() is None:
        pytest.skip("prometheus-redis-exporter not installed (Debian package prometheus-redis-exporter)")
    server = EmbeddedRedis(maxmemory="64mb").start()
    exporter, port = start_redis_exporter(server.url, tmp_path, stand_in=stand_in)
    try:
        samples = _samples(port)
        assert samples["redis_up"] == 1
        assert samples["redis_memory_max_bytes"] == 64 * 1024 * 1024
        assert 0 < samples["redis_memory_used_bytes"] < samples["redis_memory_max_bytes"]
        for name in ("redis_connected_clients", "redis_commands_processed_total", "redis_net_output_bytes_total",
                     "redis_net_input_bytes_total", "redis_evicted_keys_total"):
            assert name in samples, name
        server.kill()  # what FramecastRedisDown watches: the exporter stays up and says redis_up 0
        wait_until("redis_up 0", lambda: _samples(port)["redis_up"] == 0, 10)
        assert "redis_memory_used_bytes" not in _samples(port)
    finally:
        exporter.stop()
        server.stop()
