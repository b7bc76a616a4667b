"""The edge runs with a Redis user that can only read the bus and write its demand keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from framecast.bus import Keys
from framecast.dev.embedded import EmbeddedRedis
from tests.support.procs import EdgeProcess
from tests.support.publisher import Publisher
from tests.support.viewer import ViewerClient

# documented in docs/edge.md
EDGE_ACL = ("on >edge-pass resetkeys %R~framecast:* %W~framecast:{*}:demand:* %W~framecast:{*}:keyframe:* "
            "resetchannels -@all "
            "+ping +get +mget +zrange +xrevrange +xread +set +del")


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(password="admin-pass").start()
    admin = redis.Redis.from_url(server.url)
    admin.execute_command("ACL", "SETUSER", "edge", *EDGE_ACL.split())  # type: ignore[no-untyped-call]
    admin.close()
    yield server
    server.stop()


async def test_edge_with_read_only_acl_user(acl_redis: EmbeddedRedis, tmp_path: Any) -> None:
    pub = Publisher(acl_redis.url).start()  # the publisher uses the admin user
    url = f"redis://edge:edge-pass@127.0.0.1:{acl_redis.port}/0"
    edge = EdgeProcess(url).start(str(tmp_path))
    try:
        async with httpx.AsyncClient(base_url=edge.base) as http:
            assert (await http.get("/readyz")).status_code == 200
            v = await ViewerClient(edge.ws(), hello={"tier": "low"}).run(5.0, until_frames=20)
            assert len(v.frames) == 20 and v.close_code is None
            assert (await http.get("/snapshot/demo.jpg")).status_code == 200
            assert (await http.get("/streams")).json()["streams"]
        # the demand key was written by the edge user; anything else is refused to it
        admin = redis.Redis.from_url(acl_redis.url)
        assert admin.exists(Keys().demand("demo", "low"))
        edge_user = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.NoPermissionError):
            edge_user.set(Keys().meta("demo"), "{}")
        with pytest.raises(redis.exceptions.NoPermissionError):
            edge_user.xadd(Keys().frames("demo", "low"), {"m": b"x"})
        admin.close()
        edge_user.close()
    finally:
        edge.stop()
        pub.stop()
