"""Helpers for inference integration tests: a real service process on small frames, bus readers."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import redis

from framecast.bus import Keys
from framecast.protocol import Frame, decode_frame
from tests.support.procs import Service, inference_service

KEYS = Keys()
# small frames keep the 2-core test machine fast; same shape of ladder as the default
SMALL = ["--width", "320", "--height", "180", "--tiers", "high=320x180@80,mid=320x180@60,low=160x90@50",
         "--demand-poll-ms", "50", "--maxlen", "1000"]


def start(redis_url: str, log_dir: Path, *extra: str, stream: str = "demo") -> Service:
    return inference_service(redis_url, *SMALL, *extra, stream=stream).start(log_dir)


def metrics_port(svc: Service) -> int:
    return int(svc.args[svc.args.index("--metrics-port") + 1])


def scrape(svc: Service) -> dict[str, float]:
    """`name{labels}` -> value of every framecast_inference_* sample."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port(svc)}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(framecast_inference_\S+) (\S+)$", line)
        if m:
            out[m[1]] = float(m[2])
    return out


def frames(client: redis.Redis, tier: str, stream: str = "demo") -> list[Frame]:
    """Every stored frame of a tier, oldest first."""
    entries: Any = client.xrange(KEYS.frames(stream, tier))
    return [decode_frame(fields[b"m"]) for _, fields in entries]


def newest(client: redis.Redis, tier: str, stream: str = "demo") -> Frame | None:
    entries: Any = client.xrevrange(KEYS.frames(stream, tier), count=1)
    return decode_frame(entries[0][1][b"m"]) if entries else None
