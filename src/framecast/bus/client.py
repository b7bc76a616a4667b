"""Connecting to the bus: one URL names one server, a Redis Cluster or a Sentinel-managed master.

Also the errors that mean "the bus is away" (`REDIS_ERRORS`), the reconnect
back-off and the guard against a cancellation that redis-py swallowed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qs, unquote

import redis
import redis.asyncio as aioredis

log = logging.getLogger("framecast.bus")

# redis-py raises these when the server is away or the socket broke; the cluster client also raises
# RedisClusterException (no node for a slot, no reachable seed) while a master is being failed over
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError,
                                                 redis.exceptions.BusyLoadingError, redis.ResponseError,
                                                 redis.exceptions.ClusterError,
                                                 redis.exceptions.RedisClusterException)


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that redis-py swallowed.

    Python 3.11's `asyncio.wait_for` (used by redis-py around its socket I/O) can
    lose a cancellation that lands as the I/O completes; the task's
    `cancelling()` count still says it was asked to stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# --- where the bus is: one URL for one server, a Redis Cluster or a Sentinel-managed master ------------

CLUSTER_SCHEMES: Final = {"redis+cluster": False, "rediss+cluster": True, "valkey+cluster": False,
                          "valkeys+cluster": True}
SENTINEL_SCHEMES: Final = {"redis+sentinel": False, "rediss+sentinel": True, "valkey+sentinel": False,
                           "valkeys+sentinel": True}
SINGLE_SCHEMES: Final = ("redis", "rediss", "unix", "valkey", "valkeys")
DEFAULT_SENTINEL_PORT: Final = 26379
DEFAULT_REDIS_PORT: Final = 6379


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the bus is, parsed from `FRAMECAST_REDIS_URL` (see docs/operations.md, "Redis Cluster and Sentinel").

    - `redis://h:p/0` (also rediss, unix, valkey, valkeys): one server;
    - `redis+cluster://[user:pass@]h1:p1,h2:p2,...`: a Redis Cluster, any reachable nodes as seeds;
    - `redis+sentinel://[user:pass@]s1:p1,s2:p2,s3:p3/master-name[/db]`: the master that the
      Sentinels name; `?sentinel_username=&sentinel_password=` when the Sentinels require auth.
    The userinfo authenticates to the data nodes; a `rediss+` scheme turns TLS on.
    """

    kind: Literal["single", "cluster", "sentinel"]
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise ValueError("empty host in the node list")
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad node {item!r}")
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"bad node {item!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in node {item!r}")
    return host, int(port_text)


def parse_redis_url(url: str) -> RedisTarget:
    """The bus target of a URL; `ValueError` with a reason for anything it cannot use."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("must be a URL such as redis://host:6379/0, redis+cluster://h1:p1,h2:p2 "
                         "or redis+sentinel://s1:26379,s2:26379/mymaster")
    if scheme in SINGLE_SCHEMES:
        return RedisTarget("single", url)
    cluster = scheme in CLUSTER_SCHEMES
    if not cluster and scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"unknown scheme {scheme}://: use one of "
                         + ", ".join(f"{s}://" for s in (*SINGLE_SCHEMES, *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)))
    ssl = CLUSTER_SCHEMES[scheme] if cluster else SENTINEL_SCHEMES[scheme]
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts, userinfo = netloc, ""
    username = password = None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(pw) if colon else None)
        if not colon:  # redis://secret@host means a password, as redis-py reads it
            username, password = None, unquote(user)
    nodes = tuple(_host_port(h, DEFAULT_SENTINEL_PORT if not cluster else DEFAULT_REDIS_PORT)
                  for h in hosts.split(","))
    query = parse_qs(query_text, keep_blank_values=True)
    unknown = set(query) - ({"sentinel_username", "sentinel_password"} if not cluster else set())
    if unknown:
        raise ValueError(f"unknown query parameter(s) {', '.join(sorted(unknown))}")
    if cluster:
        if path.strip("/"):
            raise ValueError("a cluster URL has no path: Redis Cluster has only database 0")
        return RedisTarget("cluster", url, nodes, username=username, password=password, ssl=ssl)
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError("a sentinel URL names the master after the hosts: redis+sentinel://s1,s2,s3/mymaster")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("a sentinel URL's path is /master-name or /master-name/db")
    return RedisTarget("sentinel", url, nodes, service=unquote(parts[0]), db=int(parts[1]) if len(parts) == 2 else 0,
                       username=username, password=password, ssl=ssl,
                       sentinel_username=query.get("sentinel_username", [None])[-1] or None,
                       sentinel_password=query.get("sentinel_password", [None])[-1] or None)


def _common_options(target: RedisTarget, socket_timeout: float, connect_timeout: float) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout,
                               "username": target.username, "password": target.password}
    if target.ssl:
        options["ssl"] = True
    return options


def sync_client(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A blocking client for threads of the inference service (one server, a cluster or a Sentinel master)."""
    target = parse_redis_url(url)
    if target.kind == "single":
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                    health_check_interval=10)
    options = _common_options(target, timeout, timeout)
    if target.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        # require_full_coverage=False: a master being failed over must not stop the other masters' streams
        nodes = [ClusterNode(h, p) for h, p in target.nodes]  # type: ignore[no-untyped-call]
        cluster = RedisCluster(startup_nodes=nodes, require_full_coverage=False, **options)
        # RedisCluster serves the same commands for keys of one slot, which is all framecast sends per call
        # (each stream's keys share the hash tag {stream}; cross-stream calls go key by key): one client type
        return cast(redis.Redis, cluster)
    from redis.sentinel import Sentinel

    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=_sentinel_options(target, timeout),  # type: ignore[no-untyped-call]
                        **options)
    master: redis.Redis = sentinel.master_for(target.service, db=target.db,  # type: ignore[no-untyped-call]
                                              health_check_interval=10)
    return master


def _sentinel_options(target: RedisTarget, timeout: float) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                               "username": target.sentinel_username, "password": target.sentinel_password}
    if target.ssl:
        options["ssl"] = True
    return options


def stream_read_keys(*args: Any) -> list[Any] | None:
    """The keys of an XREAD/XREADGROUP command (those after STREAMS, half of what follows); None for others."""
    upper = [(a.decode() if isinstance(a, bytes) else str(a)).upper() for a in args]
    if upper[0] not in ("XREAD", "XREADGROUP") or "STREAMS" not in upper:
        return None
    first = upper.index("STREAMS") + 1
    return list(args[first:first + (len(args) - first) // 2])


def _stream_keys_parser() -> Any:
    """redis-py's cluster command parser, taught where XREAD's keys are, reading the command table once.

    XREAD has "movable keys", so redis-py's asyncio cluster client asks a node
    (COMMAND GETKEYS, to the node it chose at start-up) before every XREAD: a
    round trip per read, and when that node dies, every stream's reads fail
    until the client rebuilds its topology. The keys are the first half of what
    follows STREAMS; the parser reads them there and asks the node for nothing else.
    redis-py also re-reads the whole command table (COMMAND, ~100 ms of parsing on
    the event loop here) each time it rebuilds the topology, i.e. after every
    failed command while a master fails over; the table does not change, so it is
    read once and only the node is replaced.
    """
    from redis._parsers import AsyncCommandsParser

    class StreamKeysParser(AsyncCommandsParser):
        async def get_keys(self, *args: Any) -> Any:
            keys = stream_read_keys(*args)
            return keys if keys is not None else await super().get_keys(*args)

        async def initialize(self, node: Any = None) -> None:
            if not self.commands:
                await super().initialize(node)
            elif node is not None:
                self.node = node

    return StreamKeysParser()


def async_client(url: str, *, block_ms: int = 1000, timeout: float = 2.0,
                 max_connections: int | None = None) -> aioredis.Redis:
    """An asyncio client whose socket timeout outlives an XREAD BLOCK of `block_ms`.

    With `max_connections`, the pool is capped: a burst of concurrent commands
    (a join storm) waits up to `timeout` for a free connection instead of
    opening one connection per command and keeping them all idle afterwards.
    Cluster and Sentinel URLs give redis-py's cluster client and Sentinel
    master client; there the cap is per node and a command beyond it fails
    (a bus error, counted) instead of waiting.
    """
    # redis-py's socket_timeout applies to the blocking read too: it must exceed the block time
    socket_timeout = block_ms / 1000 + timeout
    target = parse_redis_url(url)
    if target.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        cluster = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
                               require_full_coverage=False, max_connections=max_connections or 100,
                               **_common_options(target, socket_timeout, timeout))
        cluster.commands_parser = _stream_keys_parser()
        return cast(aioredis.Redis, cluster)  # same commands for keys of one slot (see sync_client)
    if target.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(list(target.nodes),  # type: ignore[no-untyped-call]
                            sentinel_kwargs=_sentinel_options(target, timeout),
                            **_common_options(target, socket_timeout, timeout))
        extra: dict[str, Any] = {"max_connections": max_connections} if max_connections else {}
        master: aioredis.Redis = sentinel.master_for(target.service, db=target.db, health_check_interval=10,
                                                     **extra)
        return master
    options: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": timeout,
                               "health_check_interval": 10}
    if max_connections is None:
        return aioredis.Redis.from_url(url, **options)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout,
                                                    **options)
    return aioredis.Redis(connection_pool=pool)
