"""The cluster client's command parser against a real server: the command table is read once, XREAD needs nothing."""

from __future__ import annotations

import redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from framecast.bus import async_client
from framecast.dev.embedded import EmbeddedRedis


def _calls(server: EmbeddedRedis, command: str) -> int:
    stats = redis.Redis.from_url(server.url).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_topology_rebuilds_do_not_reread_the_command_table(redis_server: EmbeddedRedis) -> None:
    client = async_client("redis+cluster://127.0.0.1:1")
    assert isinstance(client, AsyncRedisCluster)
    parser = client.commands_parser
    # a node as the cluster client makes them (with its reply parsers), on a real server
    node = ClusterNode("127.0.0.1", redis_server.port, response_callbacks=client.response_callbacks)
    before = _calls(redis_server, "command")
    await parser.initialize(node)  # what redis-py does at start and after every failed command
    await parser.initialize(node)
    await parser.initialize(ClusterNode("127.0.0.1", redis_server.port, response_callbacks=client.response_callbacks))
    assert _calls(redis_server, "command") - before == 1
    assert "xadd" in parser.commands  # the table is there for every other command
    assert await parser.get_keys("GET", "framecast:{demo}:meta") == ["framecast:{demo}:meta"]
    getkeys = _calls(redis_server, "command|getkeys")
    assert await parser.get_keys("XREAD", "BLOCK", 1000, "STREAMS", "framecast:{demo}:frames:high", "$") == \
        ["framecast:{demo}:frames:high"]
    assert _calls(redis_server, "command|getkeys") == getkeys  # no round trip for XREAD's keys
    await node.disconnect()
    await client.aclose()
