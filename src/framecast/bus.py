"""The Redis Streams bus between the inference service and the edges.

Owns the key layout (documented in docs/protocol.md), the publish path
(`XADD ... MAXLEN ~ N`, pipelined with the stream's heartbeat) and the read
path (`XREAD BLOCK` from the newest entry, resuming at the newest entry after a
reconnect so that a viewer never gets a burst of stale frames).

Key layout, with the stream name as a Redis Cluster hash tag:

    {prefix}streams                     ZSET  stream -> last heartbeat (unix µs)
    {prefix}{{stream}}:frames:{tier}    STREAM entries {m: wire frame message}
    {prefix}{{stream}}:meta             STRING JSON stream description (EX)
    {prefix}{{stream}}:heartbeat        STRING last publish time in µs (EX)
    {prefix}{{stream}}:demand:{tier}    STRING edge id wanting that tier (EX)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qs, unquote

import redis
import redis.asyncio as aioredis

from framecast import constants as C
from framecast.protocol import ProtocolError, decode_header

log = logging.getLogger("framecast.bus")

# redis-py raises these when the server is away or the socket broke; the cluster client also raises
# RedisClusterException (no node for a slot, no reachable seed) while a master is being failed over
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError,
                                                 redis.exceptions.BusyLoadingError, redis.ResponseError,
                                                 redis.exceptions.ClusterError,
                                                 redis.exceptions.RedisClusterException)


@dataclass(frozen=True, slots=True)
class Keys:
    """Redis key names for one key prefix."""

    prefix: str = C.DEFAULT_KEY_PREFIX

    def streams_index(self) -> str:
        return f"{self.prefix}{C.STREAMS_INDEX_SUFFIX}"

    def frames(self, stream: str, tier: str) -> str:
        return f"{self.prefix}{{{stream}}}:frames:{tier}"

    def meta(self, stream: str) -> str:
        return f"{self.prefix}{{{stream}}}:meta"

    def heartbeat(self, stream: str) -> str:
        return f"{self.prefix}{{{stream}}}:heartbeat"

    def demand(self, stream: str, tier: str) -> str:
        return f"{self.prefix}{{{stream}}}:demand:{tier}"

    def keyframe_request(self, stream: str, tier: str) -> str:
        return f"{self.prefix}{{{stream}}}:keyframe:{tier}"


def now_us() -> int:
    """Wall-clock time in integer microseconds (the clock of capture_us)."""
    return time.time_ns() // 1000


class Backoff:
    """Jittered exponential back-off ("full jitter"); pure apart from its RNG."""

    def __init__(self, base: float = 0.1, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


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


@dataclass(slots=True)
class StreamInfo:
    """What the inference service announces about a stream (the meta key)."""

    stream: str
    tiers: list[dict[str, Any]]
    fps: float
    model: str = ""
    device: str = ""
    source: str = ""
    started_us: int = 0

    def to_json(self) -> str:
        return json.dumps({"stream": self.stream, "tiers": self.tiers, "fps": self.fps, "model": self.model,
                           "device": self.device, "source": self.source, "started_us": self.started_us})

    @classmethod
    def from_json(cls, raw: bytes | str) -> StreamInfo:
        obj = json.loads(raw)
        return cls(stream=str(obj["stream"]), tiers=list(obj["tiers"]), fps=float(obj["fps"]),
                   model=str(obj.get("model", "")), device=str(obj.get("device", "")),
                   source=str(obj.get("source", "")), started_us=int(obj.get("started_us", 0)))


class BusPublisher:
    """Publishes frames of one stream (blocking client; call from a worker thread)."""

    def __init__(self, client: redis.Redis, stream: str, *, keys: Keys, maxlen: int, meta_ttl_s: int = 10) -> None:
        self.client, self.stream, self.keys = client, stream, keys
        self.maxlen, self.meta_ttl_s = maxlen, meta_ttl_s

    def publish(self, messages: dict[str, bytes], capture_us: int) -> None:
        """XADD one wire message per tier and refresh the heartbeat in one round trip (all keys of one slot)."""
        pipe = self.client.pipeline(transaction=False)
        for tier, message in messages.items():
            pipe.xadd(self.keys.frames(self.stream, tier), {C.FRAME_FIELD: message}, maxlen=self.maxlen,
                      approximate=True)
        pipe.set(self.keys.heartbeat(self.stream), capture_us, ex=self.meta_ttl_s)
        pipe.execute()

    def heartbeat(self, info: StreamInfo | None = None) -> None:
        """Refresh the stream's heartbeat (and meta), then its entry in the streams index.

        The index is one key for all streams: in a Redis Cluster it lives on one
        master, so it is written apart and best effort, and a master failing over
        never stops the heartbeat of a stream whose keys live elsewhere.
        """
        t_us = now_us()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.heartbeat(self.stream), t_us, ex=self.meta_ttl_s)
        if info is not None:
            pipe.set(self.keys.meta(self.stream), info.to_json(), ex=self.meta_ttl_s)
        pipe.execute()
        try:
            self.client.zadd(self.keys.streams_index(), {self.stream: t_us})
        except REDIS_ERRORS as exc:
            log.debug("streams index not updated: %s", exc)

    def demanded(self, tiers: list[str]) -> set[str]:
        """The tiers some edge has asked for recently."""
        pipe = self.client.pipeline(transaction=False)
        for tier in tiers:
            pipe.exists(self.keys.demand(self.stream, tier))
        return {tier for tier, n in zip(tiers, pipe.execute(), strict=True) if n}


async def newest_entry(client: aioredis.Redis, key: str) -> tuple[bytes, bytes] | None:
    """The newest (entry id, wire message) of a frames stream, if any."""
    entries: Any = await client.xrevrange(key, "+", "-", count=1)
    if not entries:
        return None
    entry_id, fields = entries[0]
    return bytes(entry_id), bytes(fields[C.FRAME_FIELD])


def captured_within(message: bytes, max_age_us: int | None) -> bool:
    """Whether a stored wire message was captured at most `max_age_us` ago (None: any age will do)."""
    if max_age_us is None:
        return True
    try:
        return now_us() - decode_header(message).capture_us <= max_age_us
    except ProtocolError:
        return False


async def read_frames(client: aioredis.Redis, key: str, *, block_ms: int = 1000,
                      backoff: Backoff | None = None, on_error: Any = None,
                      max_age_us: int | None = None) -> AsyncIterator[bytes]:
    """Yield wire messages of one frames stream forever, newest first then live.

    Starts with the newest stored entry (so a new viewer gets a picture at once)
    unless it was captured more than `max_age_us` ago (a tier nobody encodes
    any more keeps its last entries: they are no start point), then follows
    with `XREAD BLOCK`. When Redis goes away it retries with jittered back-off
    and resumes at the newest entry, skipping the backlog. JPEG tiers only:
    video tiers need every entry (`framecast.video.reader.read_video_frames`).
    `on_error(exc)` is called for every failed attempt (for metrics and logs).
    """
    backoff = backoff or Backoff()
    last_id: bytes | None = None
    while True:
        try:
            raise_if_cancelling()
            if last_id is None:
                newest = await newest_entry(client, key)
                if newest is None:
                    last_id = b"$"
                else:
                    last_id = newest[0]
                    if captured_within(newest[1], max_age_us):
                        yield newest[1]
            # "$" means "only entries added after this call"
            reply: Any = await client.xread({key: last_id}, count=16, block=block_ms)
            raise_if_cancelling()
            backoff.reset()
            if not reply:
                if last_id == b"$":
                    last_id = None  # nothing yet: look for a first entry again
                continue
            entries = reply[0][1]
            last_id = bytes(entries[-1][0])
            # deliver only the newest of a batch: older ones are stale on arrival
            yield bytes(entries[-1][1][C.FRAME_FIELD])
        except asyncio.CancelledError:
            raise
        except REDIS_ERRORS as exc:
            if on_error is not None:
                on_error(exc)
            last_id = None  # after a reconnect resume at the newest entry, never replay the backlog
            await asyncio.sleep(backoff.next_delay())
