"""The Redis Streams bus between the inference service and the edges: the only link between services.

    client   where the bus is (one URL: a server, a Cluster or a Sentinel master), clients
    streams  key names, the typed stream description (meta) and the publisher
    read     frames streams read newest-wins (JPEG) or every entry from a keyframe (H.264)
    signals  what edges ask of the inference service: demand, keyframe requests

The names below are the bus's public API: `from framecast.bus import ...`.
"""

from framecast.backoff import Backoff
from framecast.bus.client import (
    CLUSTER_SCHEMES,
    DEFAULT_REDIS_PORT,
    DEFAULT_SENTINEL_PORT,
    REDIS_ERRORS,
    SENTINEL_SCHEMES,
    SINGLE_SCHEMES,
    RedisTarget,
    async_client,
    parse_redis_url,
    raise_if_cancelling,
    stream_read_keys,
    sync_client,
)
from framecast.bus.read import VideoEntry, captured_within, newest_entry, read_frames, read_video_frames
from framecast.bus.streams import BusPublisher, Keys, StreamInfo, now_us

__all__ = [
    "CLUSTER_SCHEMES",
    "DEFAULT_REDIS_PORT",
    "DEFAULT_SENTINEL_PORT",
    "REDIS_ERRORS",
    "SENTINEL_SCHEMES",
    "SINGLE_SCHEMES",
    "Backoff",
    "BusPublisher",
    "Keys",
    "RedisTarget",
    "StreamInfo",
    "VideoEntry",
    "async_client",
    "captured_within",
    "newest_entry",
    "now_us",
    "parse_redis_url",
    "raise_if_cancelling",
    "read_frames",
    "read_video_frames",
    "stream_read_keys",
    "sync_client",
]
