"""Settings of the edge service (env `FRAMECAST_*`, flags `--name`, defaults here)."""

from __future__ import annotations

import os
import socket

from pydantic import Field, ValidationInfo, field_validator

from framecast import constants as C
from framecast.settings import CommonSettings


def _default_edge_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class EdgeSettings(CommonSettings):
    """Everything the edge needs; every field is a flag and an environment variable."""

    host: str = Field(C.DEFAULT_EDGE_HOST, description="address to listen on")
    port: int = Field(C.DEFAULT_EDGE_PORT, ge=0, le=65535, description="port to listen on")
    edge_id: str = Field("", description="name of this replica in hello/metrics (default host-pid)")
    static_dir: str = Field("", description="viewer page folder (default: the package's edge/static)")
    workers: int = Field(1, ge=0, le=256,
                         description="edge processes sharing the port (SO_REUSEPORT); 0 = one per CPU (the edge "
                                     "image sets 0)")

    # --- limits
    max_viewers: int = Field(1000, ge=1, description="viewers per replica; more are closed with 1013")
    viewers_per_ip: int = Field(50, ge=0, description="viewers per client address (0 = unlimited)")
    max_message_bytes: int = Field(4096, ge=256, le=1 << 20,
                                   description="largest WebSocket message a viewer may send (closed 1009)")
    control_rate: float = Field(200.0, gt=0, description="control messages per second a viewer may send")

    # --- connection limits: applied below HTTP, before any WebSocket handshake (docs/security.md)
    max_connections: int = Field(4096, ge=1,
                                 description="open TCP connections per replica, lowered at start to fit the fd "
                                             "limit; more get 503 and a close")
    connections_per_ip: int = Field(100, ge=0,
                                    description="open TCP connections per client address (0 = unlimited; trusted "
                                                "proxies are exempt)")
    max_header_bytes: int = Field(16384, ge=1024, le=1 << 20,
                                  description="request line and headers; larger gets 431 and a close")
    handshake_timeout_s: float = Field(5.0, gt=0,
                                       description="time to send a whole request head after connecting (then 408 "
                                                   "and a close)")
    idle_timeout_s: float = Field(5.0, gt=0, description="an HTTP connection between requests is closed after this")
    ping_rate: float = Field(2.0, gt=0,
                             description="WebSocket pings per second a viewer may send (burst 10; more: closed 1008)")
    max_unsent_bytes: int = Field(4 << 20, ge=1 << 16,
                                  description="a WebSocket whose unsent bytes (frames, pongs, controls) pass this "
                                              "is cut")
    max_pending_auth: int = Field(64, ge=1,
                                  description="token-less WebSockets waiting for their hello, counted apart from "
                                              "viewers (more: closed 1013)")
    pending_auth_per_ip: int = Field(4, ge=1, description="token-less WebSockets waiting for a hello per address")
    pinned_tiers_per_ip: int = Field(2, ge=0,
                                     description="tiers of a stream that viewers of one address can make the "
                                                 "inference service encode by pinning them (0 = unlimited)")
    keyframe_interval_s: float = Field(1.0, gt=0,
                                       description="fewest seconds between keyframe requests for one stream tier "
                                                   "(whoever asks)")

    # --- liveness
    ping_interval_s: float = Field(20.0, ge=0, description="WebSocket ping interval (0 = off)")
    ping_timeout_s: float = Field(20.0, gt=0, description="close when a ping is not answered in time")
    ack_timeout_s: float = Field(10.0, gt=0,
                                 description="close (4008) a viewer that neither acks nor reads for this long")
    hello_timeout_s: float = Field(2.0, gt=0, description="time to send a token-carrying hello when auth is on")
    hello_wait_s: float = Field(0.5, ge=0,
                                description="for streams with video tiers, time to wait for the viewer's hello "
                                            "(its codecs) before choosing its tier")

    # --- pacing
    latency_target_ms: float = Field(50.0, gt=0, description="queueing delay allowed above the base delay")
    max_inflight_frames: int = Field(8, ge=1, le=32, description="most unacknowledged frames per viewer")
    unsent_budget_bytes: int = Field(16384, ge=0, description="kernel unsent bytes allowed before the next frame")
    legacy_budget_bytes: int = Field(65536, ge=0,
                                     description="unsent bytes allowed for viewers that never ack")
    adapt: bool = Field(True, description="adapt each viewer's tier to its measured delivery rate")
    tier_down_hold_s: float = Field(1.5, gt=0, description="FPS shortfall time before a tier switch down")
    tier_up_hold_s: float = Field(3.0, gt=0, description="healthy time at a tier before probing up")
    tier_probe_interval_s: float = Field(4.0, gt=0,
                                         description="first delay between probes up (doubles after a failed one)")

    # --- bus
    reader_grace_s: float = Field(5.0, ge=0, description="keep a tier's bus reader this long after its last viewer")
    block_ms: int = Field(1000, ge=10, le=60000, description="XREAD BLOCK time")
    demand_ttl_s: int = Field(5, ge=2, description="TTL of the demand key asking inference for a tier")
    stall_after_s: float = Field(2.0, gt=0, description="heartbeat age after which a stream is 'stalled'")

    # --- snapshots (/snapshot/{stream}.jpg)
    snapshot_wait_s: float = Field(2.0, ge=0, le=30,
                                   description="time a snapshot of a tier nobody watches waits for its first "
                                               "fresh frame (the tier is demanded meanwhile)")
    snapshot_rate: float = Field(100.0, gt=0,
                                 description="snapshots per second per replica that may read Redis or demand a "
                                             "tier (burst 2x); over it only frames held by the replica are served")
    snapshot_rate_per_ip: float = Field(5.0, gt=0,
                                        description="the same, per client address (over it: a held frame or 429)")

    # --- shutdown
    drain_delay_s: float = Field(2.0, ge=0, description="after SIGTERM, time /readyz fails before closing viewers")
    drain_timeout_s: float = Field(10.0, gt=0, description="after SIGTERM, most time until the process exits")

    # --- access control
    auth_secret: str = Field("", description="HS256 secret; when set viewers need a JWT naming the stream")
    allowed_origins: str = Field("", description="comma-separated Origin allow-list for WebSockets (empty = any)")
    forwarded_allow_ips: str = Field("127.0.0.1",
                                     description="comma-separated addresses/networks of the proxies trusted for "
                                                 "X-Forwarded-For (the client is the right-most untrusted address; "
                                                 "* = trust the direct peer, one hop)")
    metrics_port: int = Field(0, ge=0, le=65535, description="serve /metrics on this separate port (0 = main port)")
    metrics_host: str = Field("127.0.0.1", description="address of the separate metrics port")
    access_log: bool = Field(False, description="log every HTTP request")
    metrics_token: str = Field("", description="with auth on and metrics on the main port: the bearer token "
                                               "/metrics wants (else a token for every stream)")

    @field_validator("edge_id")
    @classmethod
    def _check_edge_id(cls, value: str) -> str:
        if len(value) > 64:
            raise ValueError("must be at most 64 characters")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: str) -> str:
        for origin in _split(value):
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"origin {origin!r} must start with http:// or https:// (or be *)")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_forwarded(cls, value: str) -> str:
        from framecast.edge.proxies import TrustedProxies

        TrustedProxies.parse(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("metrics_port")
    @classmethod
    def _check_metrics_port(cls, value: int, info: ValidationInfo) -> int:
        if value and value == info.data.get("port"):
            raise ValueError("must differ from port")
        return value

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.rstrip("/") for o in _split(self.allowed_origins))

    @property
    def name(self) -> str:
        return self.edge_id or _default_edge_id()


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
