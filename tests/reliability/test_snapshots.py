"""`/snapshot/{stream}.jpg` on a real stack: fresh at any time, best fresh tier named, token required, rate-limited.

Real Valkey, real `python -m framecast.inference` (which encodes only demanded
tiers, and the lightest at 1 fps while nobody watches), real edge. No viewer
connects before the snapshots: the stack is as a new user finds it.
"""

from __future__ import annotations

import http.client
import time

import cv2
import httpx
import numpy as np

from framecast.bus import now_us
from framecast.edge.auth import make_token
from tests.reliability.conftest import Stack, StackFactory
from tests.reliability.support import record
from tests.support.timing import scaled

STALL_AFTER_S = 2.0  # the edge's default
SECRET = "snapshot-test-secret"


def wait_announced(stack: Stack, headers: dict[str, str] | None = None) -> None:
    """Poll /streams (no viewer: a viewer would demand tiers) until the stream is live."""
    deadline = time.monotonic() + scaled(90)
    while time.monotonic() < deadline:
        try:
            body = httpx.get(stack.base + "/streams", headers=headers, timeout=5).json()
            if any(s.get("stream") == "demo" and s.get("live") for s in body.get("streams", [])):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"stream never announced\n{stack.logs()}")


def fresh_jpeg(r: httpx.Response) -> tuple[int, int, float]:
    """(width, height, age in s) of a snapshot response, checking it is a JPEG."""
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img.shape[1], img.shape[0], (now_us() - int(r.headers["x-capture-us"])) / 1e6


def redis_calls(stack: Stack, command: str) -> int:
    import redis

    client = redis.Redis.from_url(stack.redis.url)
    try:
        stats = client.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    finally:
        client.close()


def newest_age(stack: Stack, tier: str) -> float | None:
    """Age in s of the newest stored frame of a tier (None: the tier has no frame)."""
    import redis

    from framecast.bus import Keys
    from framecast.protocol import decode_header

    client = redis.Redis.from_url(stack.redis.url)
    try:
        entries = client.xrevrange(Keys().frames("demo", tier), "+", "-", count=1)
    finally:
        client.close()
    return (now_us() - decode_header(entries[0][1][b"m"]).capture_us) / 1e6 if entries else None


def status_from(stack: Stack, path: str, source: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_snapshot_of_an_idle_stream_is_fresh_and_names_its_tier(make_stack: StackFactory) -> None:
    stack = make_stack(edge_args=["--reader-grace-s", "1", "--snapshot-rate-per-ip", "2", "--snapshot-rate", "3"])
    wait_announced(stack)
    with httpx.Client(base_url=stack.base, timeout=scaled(10)) as http_:
        # a tier nobody watches (never encoded yet): demanded, then served within the bounded wait
        assert newest_age(stack, "high") is None, "the high tier was encoded before anyone asked for it"
        t0 = time.monotonic()
        w, h, age = fresh_jpeg(http_.get("/snapshot/demo.jpg?tier=high"))
        took_high = time.monotonic() - t0
        assert (w, h) == (320, 180) and age <= STALL_AFTER_S, (w, h, age)
        assert took_high < scaled(2.5), took_high
        # no tier: the best tier with a fresh frame, named in X-Tier
        r = http_.get("/snapshot/demo.jpg")
        _, _, age = fresh_jpeg(r)
        assert r.headers["x-tier"] == "high" and age <= STALL_AFTER_S, (r.headers, age)

        # once nobody demands `high` any more, its last frame goes stale; no tier now means the idle 1 fps tier
        time.sleep(STALL_AFTER_S + 2.0)  # the demand lapses (grace 1 s, next tick) and `high` ages
        t0 = time.monotonic()
        r = http_.get("/snapshot/demo.jpg")
        took_idle = time.monotonic() - t0
        w, h, age = fresh_jpeg(r)
        assert r.headers["x-tier"] == "low" and (w, h) == (160, 90) and age <= STALL_AFTER_S, (r.headers, age)

        # rate limits: a burst from one address reuses the replica's frames: all served, Redis barely touched
        time.sleep(2.0)  # the per-address bucket refills (2/s, burst 4)
        http_.get("/snapshot/demo.jpg?tier=high")  # starts the tier again (demand + wait)
        before = redis_calls(stack, "xrevrange")
        codes = [http_.get("/snapshot/demo.jpg?tier=high").status_code for _ in range(30)]
        reads = redis_calls(stack, "xrevrange") - before
        assert codes.count(200) == 30, codes
        assert reads <= 4, f"{reads} XREVRANGE for 30 snapshots of a tier the replica holds"
        # ... and what the replica does not hold is refused beyond the rate: per address, then per replica
        time.sleep(2.0)
        unknown = [http_.get("/snapshot/nosuch.jpg").status_code for _ in range(8)]
        assert unknown[:2] == [404, 404] and unknown[-3:] == [429, 429, 429], unknown
        time.sleep(2.0)  # both buckets refill (per address 4, per replica 6)
        first = [status_from(stack, "/snapshot/nosuch.jpg", "127.0.0.1") for _ in range(4)]
        second = [status_from(stack, "/snapshot/nosuch.jpg", "127.0.0.2") for _ in range(4)]
        assert first == [404] * 4, first
        assert 429 in second, f"the replica's limit (burst 6) let 8 expensive snapshots through: {second}"
    record("snapshot_idle_stream", undemanded_tier_s=round(took_high, 2), idle_tier_s=round(took_idle, 2),
           burst_30_xrevrange=reads, unknown_from_one_address=unknown, second_address=second)


def test_snapshot_requires_the_viewer_token_and_keeps_it_out_of_the_access_log(make_stack: StackFactory) -> None:
    stack = make_stack(edge_args=["--auth-secret", SECRET, "--access-log", "--log-level", "info"])
    token = make_token(SECRET, ["demo"])
    other = make_token(SECRET, ["other"])
    wait_announced(stack, headers={"Authorization": f"Bearer {make_token(SECRET, '*')}"})
    with httpx.Client(base_url=stack.base, timeout=scaled(10)) as http_:
        r = http_.get("/snapshot/demo.jpg?tier=low")
        assert r.status_code == 401 and "Bearer" in r.headers.get("www-authenticate", ""), (r.status_code, r.text)
        assert http_.get("/snapshot/demo.jpg?tier=low", headers={"Authorization": "Bearer nonsense"}
                         ).status_code == 401
        assert http_.get(f"/snapshot/demo.jpg?tier=low&token={other}").status_code == 401
        fresh_jpeg(http_.get("/snapshot/demo.jpg?tier=low", headers={"Authorization": f"Bearer {token}"}))
        fresh_jpeg(http_.get(f"/snapshot/demo.jpg?tier=low&token={token}"))  # the <img src> form
    assert stack.edge is not None
    deadline = time.monotonic() + scaled(5)
    while "token=***" not in stack.edge.log() and time.monotonic() < deadline:
        time.sleep(0.05)  # the access log line is written after the response
    log = stack.edge.log()
    assert "token=***" in log, log[-2000:]
    assert token not in log and other not in log, "a token reached the edge's log"
