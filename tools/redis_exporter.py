"""A tiny stand-in for oliver006/redis_exporter, for native runs and tests only.

Docker compose runs the real exporter image. Where its binary is not
installed (these machines), this script reads `INFO` from the real Redis or
Valkey server on every scrape and exposes a few of the same series under the
same names, so the dashboard's Redis panels and the Redis alerts run
unchanged:

    redis_up                          1 if INFO answered, else 0
    redis_memory_used_bytes           INFO used_memory
    redis_memory_max_bytes            INFO maxmemory (0 = no limit)
    redis_memory_used_rss_bytes       INFO used_memory_rss
    redis_cpu_sys_seconds_total       INFO used_cpu_sys
    redis_cpu_user_seconds_total      INFO used_cpu_user
    redis_connected_clients           INFO connected_clients
    redis_commands_processed_total    INFO total_commands_processed
    redis_net_input_bytes_total       INFO total_net_input_bytes
    redis_net_output_bytes_total      INFO total_net_output_bytes
    redis_evicted_keys_total          INFO evicted_keys
    redis_rejected_connections_total  INFO rejected_connections

    python tools/redis_exporter.py --redis-url redis://127.0.0.1:6379/0 --port 9121
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator

import redis
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# (metric name, INFO field, help, is_counter); counter names here are without the `_total` suffix
_FIELDS: tuple[tuple[str, str, str, bool], ...] = (
    ("redis_memory_used_bytes", "used_memory", "Total number of bytes allocated by Redis", False),
    ("redis_memory_max_bytes", "maxmemory", "maxmemory setting (0: no limit)", False),
    ("redis_memory_used_rss_bytes", "used_memory_rss", "Resident set size of the Redis process", False),
    ("redis_cpu_sys_seconds", "used_cpu_sys", "System CPU time of the Redis process", True),
    ("redis_cpu_user_seconds", "used_cpu_user", "User CPU time of the Redis process", True),
    ("redis_connected_clients", "connected_clients", "Number of client connections", False),
    ("redis_commands_processed", "total_commands_processed", "Commands processed by the server", True),
    ("redis_net_input_bytes", "total_net_input_bytes", "Bytes read from the network", True),
    ("redis_net_output_bytes", "total_net_output_bytes", "Bytes written to the network", True),
    ("redis_evicted_keys", "evicted_keys", "Keys evicted because of maxmemory", True),
    ("redis_rejected_connections", "rejected_connections", "Connections rejected (maxclients)", True),
)


class RedisInfoCollector(Collector):
    """Reads INFO on every scrape; a failed INFO yields redis_up 0 and nothing else."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily("redis_up", "Whether the last INFO of the Redis server succeeded")
        try:
            info = self.client.info()
        except (redis.RedisError, OSError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, key, helptext, is_counter in _FIELDS:
            value = float(info.get(key, 0))
            if is_counter:
                counter = CounterMetricFamily(name, helptext)
                counter.add_metric([], value)
                yield counter
            else:
                yield GaugeMetricFamily(name, helptext, value=value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9121)
    args = parser.parse_args(argv)
    REGISTRY.register(RedisInfoCollector(args.redis_url))
    server, _thread = start_http_server(args.port, addr=args.host)
    print(f"redis_exporter stand-in on http://{args.host}:{server.server_port}/metrics", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
