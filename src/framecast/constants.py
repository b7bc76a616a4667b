"""Every name and number that more than one part of framecast must agree on.

Key layouts, header geometry, close codes and defaults live here so that the
inference service, the edge, the clients and the tests never spell them twice.
"""

from __future__ import annotations

import re
from typing import Final

# --- wire protocol ---------------------------------------------------------
MAGIC: Final = b"FC"
PROTOCOL_VERSION: Final = 1
HEADER_SIZE: Final = 40
# little-endian: magic, version, header_len, codec, tier, flags, quality,
# width, height, payload_len, frame_id, capture_us, publish_us
HEADER_FORMAT: Final = "<2sBBBBBBHHIQQQ"

CODEC_JPEG: Final = 1
CODEC_H264: Final = 2
CODEC_NAMES: Final = {CODEC_JPEG: "jpeg", CODEC_H264: "h264"}

FLAG_KEYFRAME: Final = 0x01

MAX_PAYLOAD_BYTES: Final = 16 * 1024 * 1024
MAX_CONTROL_BYTES: Final = 4096

# --- defaults shared by services and clients -------------------------------
DEFAULT_STREAM: Final = "demo"
DEFAULT_EDGE_HOST: Final = "127.0.0.1"
DEFAULT_EDGE_PORT: Final = 8000
DEFAULT_EDGE_URL: Final = f"http://{DEFAULT_EDGE_HOST}:{DEFAULT_EDGE_PORT}"
DEFAULT_INFERENCE_METRICS_PORT: Final = 9101
DEFAULT_KEY_PREFIX: Final = "framecast:"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"

# \Z, not $: a `$` also matches before a trailing newline ("demo\n" would pass)
STREAM_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
TIER_NAME_RE: Final = re.compile(r"^[a-z0-9_-]{1,32}\Z")

# --- bus (Redis) layout ----------------------------------------------------
# Keys of one stream share the hash tag {stream} so that a Redis Cluster keeps
# them in one slot.
FRAME_FIELD: Final = b"m"  # stream entry field holding the whole wire message
STREAMS_INDEX_SUFFIX: Final = "streams"  # sorted set: stream -> last heartbeat µs

# --- WebSocket close codes -------------------------------------------------
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_SERVICE_RESTART: Final = 1012
CLOSE_TRY_AGAIN_LATER: Final = 1013
CLOSE_AUTH_FAILED: Final = 4001
CLOSE_UNKNOWN_STREAM: Final = 4004
CLOSE_VIEWER_TIMEOUT: Final = 4008
CLOSE_BAD_MESSAGE: Final = 4400

CLOSE_REASONS: Final = {
    CLOSE_NORMAL: "normal closure",
    CLOSE_GOING_AWAY: "going away",
    CLOSE_PROTOCOL_ERROR: "protocol error",
    CLOSE_UNSUPPORTED_DATA: "binary messages are not accepted from viewers",
    CLOSE_POLICY_VIOLATION: "policy violation",
    CLOSE_MESSAGE_TOO_BIG: "message too big",
    CLOSE_INTERNAL_ERROR: "internal error",
    CLOSE_SERVICE_RESTART: "server restarting, reconnect",
    CLOSE_TRY_AGAIN_LATER: "too many viewers, try again later",
    CLOSE_AUTH_FAILED: "authentication failed",
    CLOSE_UNKNOWN_STREAM: "unknown stream",
    CLOSE_VIEWER_TIMEOUT: "viewer timed out",
    CLOSE_BAD_MESSAGE: "malformed control message",
}

# --- exit codes ------------------------------------------------------------
EXIT_BAD_SETTING: Final = 2
