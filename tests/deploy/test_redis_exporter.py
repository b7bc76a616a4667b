"""tools/redis_exporter.py (the native stand-in for oliver006/redis_exporter) against a real server."""

from __future__ import annotations

from pathlib import Path

from tools.native_stack import http_get, start_redis_exporter, wait_until

from framecast.embedded import EmbeddedRedis


def _samples(port: int) -> dict[str, float]:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("redis_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_exports_real_info_and_redis_down(tmp_path: Path) -> None:
    server = EmbeddedRedis(maxmemory="64mb").start()
    exporter, port = start_redis_exporter(server.url, tmp_path)
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
