"""FRAMECAST_REDIS_URL: one server, a Redis Cluster or a Sentinel master, parsed and refused with a reason."""

from __future__ import annotations

import pytest
import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import SentinelConnectionPool

from framecast.bus import REDIS_ERRORS, RedisTarget, async_client, parse_redis_url, stream_read_keys, sync_client
from framecast.edge.settings import EdgeSettings
from framecast.settings import load_settings


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://127.0.0.1:6379/0", RedisTarget("single", "redis://127.0.0.1:6379/0")),
    ("unix:///run/redis.sock", RedisTarget("single", "unix:///run/redis.sock")),
    ("redis+cluster://a:7000,b:7001,c", RedisTarget("cluster", "redis+cluster://a:7000,b:7001,c",
                                                      (("a", 7000), ("b", 7001), ("c", 6379)))),
    ("rediss+cluster://u:p%40ss@[::1]:7000/", RedisTarget("cluster", "rediss+cluster://u:p%40ss@[::1]:7000/",
                                                           (("::1", 7000),), username="u", password="p@ss",
                                                           ssl=True)),
    ("redis+sentinel://s1,s2:26380,s3/mymaster", RedisTarget(
        "sentinel", "redis+sentinel://s1,s2:26380,s3/mymaster", (("s1", 26379), ("s2", 26380), ("s3", 26379)),
        service="mymaster")),
    ("redis+sentinel://:secret@s1:1/m/2?sentinel_password=sp", RedisTarget(
        "sentinel", "redis+sentinel://:secret@s1:1/m/2?sentinel_password=sp", (("s1", 1),), service="m", db=2,
        password="secret", sentinel_password="sp")),
])
def test_urls_parse_to_their_target(url: str, expected: RedisTarget) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(("url", "reason"), [
    ("http://x:1", "unknown scheme http://"),
    ("localhost:6379", "must be a URL"),
    ("redis+cluster://a:1,,b:2", "empty host"),
    ("redis+cluster://a:0", "bad port"),
    ("redis+cluster://a:1/3", "only database 0"),
    ("redis+sentinel://s1,s2", "names the master"),
    ("redis+sentinel://s1/m/x", "/master-name or /master-name/db"),
    ("redis+sentinel://s1/m?passwd=x", "unknown query parameter(s) passwd"),
])
def test_bad_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_redis_url(url)


def test_a_bad_url_stops_start_up_naming_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_settings(EdgeSettings, ["--redis-url", "redis+sentinel://s1:26379,s2:26379"], prog="framecast-edge")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "FRAMECAST_REDIS_URL (--redis-url)" in err and "names the master" in err


def test_cluster_and_sentinel_urls_are_accepted_settings() -> None:
    for url in ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "redis+sentinel://127.0.0.1:26379/mymaster"):
        assert load_settings(EdgeSettings, ["--redis-url", url]).redis_url == url


async def test_each_kind_builds_its_redis_py_client() -> None:
    """The client types redis-py documents for each topology (built without a server: they connect lazily)."""
    assert type(sync_client("redis://127.0.0.1:1/0")) is redis.Redis
    sentinel = sync_client("redis+sentinel://127.0.0.1:1/mymaster/3")
    assert isinstance(sentinel.connection_pool, SentinelConnectionPool)
    assert sentinel.connection_pool.service_name == "mymaster"
    assert sentinel.connection_pool.connection_kwargs["db"] == 3
    asentinel = async_client("redis+sentinel://127.0.0.1:1/mymaster", max_connections=4)
    assert isinstance(asentinel.connection_pool, AsyncSentinelPool)
    acluster: object = async_client("redis+cluster://127.0.0.1:1,127.0.0.1:2", block_ms=500, timeout=1.0)
    assert isinstance(acluster, AsyncRedisCluster)
    assert [(n.host, n.port) for n in acluster.nodes_manager.startup_nodes.values()] == \
        [("127.0.0.1", 1), ("127.0.0.1", 2)]
    assert acluster.connection_kwargs["socket_timeout"] == 1.5  # outlives XREAD BLOCK 500 ms
    await acluster.aclose()
    await asentinel.aclose()


def test_the_sync_cluster_client_says_when_no_seed_answers() -> None:
    """redis-py's sync cluster client reads the slot map at once; nobody there is a bus error, not a crash."""
    with pytest.raises(REDIS_ERRORS):
        sync_client("redis+cluster://127.0.0.1:1", timeout=0.5)


async def test_the_cluster_client_finds_xread_keys_itself() -> None:
    """No COMMAND GETKEYS round trip (to one fixed node) before each XREAD: the keys follow STREAMS."""
    assert stream_read_keys("XREAD", "COUNT", 16, "BLOCK", 1000, "STREAMS", "k1", "$") == ["k1"]
    assert stream_read_keys(b"XREAD", b"STREAMS", b"a", b"b", b"0-0", b"0-0") == [b"a", b"b"]
    assert stream_read_keys("XREADGROUP", "GROUP", "g", "c", "streams", "k", ">") == ["k"]
    assert stream_read_keys("XADD", "k", "*", "m", "v") is None
    assert stream_read_keys("XREAD", "COUNT", 1) is None
    client: object = async_client("redis+cluster://127.0.0.1:1")
    assert isinstance(client, AsyncRedisCluster)
    # answered without any node (the client has not connected anywhere)
    assert await client.commands_parser.get_keys("XREAD", "COUNT", 16, "BLOCK", 1000, "STREAMS", "k", "$") == ["k"]
    await client.aclose()
