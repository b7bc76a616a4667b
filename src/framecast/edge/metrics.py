"""Every Prometheus metric of the edge, in one registry per app (no per-viewer labels).

Series with known label values are created at zero so that dashboards and
alerts see them before the first event. Stream- and tier-labelled series
appear when a stream's tier is first read (stream names are bounded: only
streams the bus knows get a viewer).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

from framecast import constants as C

DROP_REASONS = ("queue_full", "stale", "tier_switch",
                # video tiers (framecast.video.gop): waiting for a keyframe, fell behind, replaced by a keyframe,
                # chain broken (bus gap, re-join, keyframe asked by the viewer)
                "gop_wait", "behind", "catch_up", "chain_broken")
REJECT_REASONS = ("too_many_viewers", "per_ip_limit", "origin", "auth", "unknown_stream", "draining", "bad_message",
                  "pending_auth_limit")
CLOSE_CODES = (C.CLOSE_NORMAL, C.CLOSE_GOING_AWAY, C.CLOSE_PROTOCOL_ERROR, C.CLOSE_UNSUPPORTED_DATA,
               C.CLOSE_POLICY_VIOLATION, C.CLOSE_MESSAGE_TOO_BIG, C.CLOSE_INTERNAL_ERROR, C.CLOSE_SERVICE_RESTART,
               C.CLOSE_TRY_AGAIN_LATER, C.CLOSE_AUTH_FAILED, C.CLOSE_UNKNOWN_STREAM, C.CLOSE_VIEWER_TIMEOUT,
               C.CLOSE_BAD_MESSAGE, 1005, 1006)
CONTROL_TYPES = ("hello", "ack", "set", "stats", "keyframe")
CLOSE_LABELS = frozenset(str(c) for c in CLOSE_CODES)
# connections refused before they are parsed (framecast.edge.guard), and cut for client errors afterwards
REFUSE_REASONS = ("connection_cap", "per_ip_connections", "header_too_large", "handshake_timeout", "bad_handshake")
CUT_REASONS = ("ping_flood", "unsent_budget", "invalid_utf8")


def close_label(code: int | str | None) -> str:
    """The `code` label of a close: a code the edge knows, else "other" (a client picks any of ~2,000)."""
    label = str(code)
    return label if label in CLOSE_LABELS else "other"

# from 0.5 ms: on a LAN or loopback, send-to-ack and first-frame times sit below 5 ms, and a first bucket of 5 ms
# only lets histogram_quantile interpolate (2.5 ms, 4.75 ms whatever the truth)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                    0.75, 1.0, 2.0, 5.0)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class EdgeMetrics:
    """The edge's metric objects, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        if registry is None:  # a private registry: export the process' CPU, memory and fds like the default one
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        self.viewers = Gauge("framecast_edge_viewers", "Connected viewers by stream", ["stream"], registry=r)
        # a gauge: no _total (that suffix is a counter's); the sum of framecast_edge_viewers plus viewers between
        # accept and admission
        self.connected_viewers = Gauge("framecast_edge_connected_viewers", "Connected viewers on this replica",
                                       registry=r)
        self.frames_sent = Counter("framecast_edge_frames_sent_total", "Frames written to viewers by stream and tier",
                                   ["stream", "tier"], registry=r)
        self.bytes_sent = Counter("framecast_edge_bytes_sent_total", "Frame bytes written to viewers by stream",
                                  ["stream"], registry=r)
        self.drops = Counter("framecast_edge_frames_dropped_total",
                             "Frames a viewer did not get, by stream and reason (queue_full: its queue overflowed; "
                             "stale: a newer frame replaced it while the window was closed; tier_switch)",
                             ["stream", "reason"], registry=r)
        self.glass_to_glass = Histogram(
            "framecast_edge_glass_to_glass_seconds",
            "Capture to viewer ack (ack arrival on the edge clock minus capture_us; includes the ack's way back)",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.frame_delay = Histogram("framecast_edge_frame_delay_seconds",
                                     "Edge send to viewer ack of a frame", buckets=_LATENCY_BUCKETS, registry=r)
        self.inflight = Histogram("framecast_edge_inflight_frames", "Unacknowledged frames when a frame is sent",
                                  buckets=(0, 1, 2, 3, 4, 6, 8, 16, 32), registry=r)
        self.tier_switches = Counter("framecast_edge_tier_switches_total", "Viewer tier changes",
                                     ["direction"], registry=r)
        self.reader_lag = Histogram("framecast_edge_bus_reader_lag_seconds",
                                    "Time from capture to the edge reading the frame from the bus",
                                    buckets=_LAG_BUCKETS, registry=r)
        self.bus_reconnects = Counter("framecast_edge_bus_errors_total",
                                      "Failed bus reads (each followed by a jittered reconnect)", registry=r)
        self.bus_readers = Gauge("framecast_edge_bus_readers", "Running bus readers (stream x tier)", registry=r)
        self.closes = Counter("framecast_edge_closes_total", "Viewer connections closed, by close code", ["code"],
                              registry=r)
        self.rejected = Counter("framecast_edge_rejected_viewers_total", "Viewers refused, by reason", ["reason"],
                                registry=r)
        self.control = Counter("framecast_edge_control_messages_total", "Control messages from viewers",
                               ["type"], registry=r)
        self.keyframe_requests = Counter("framecast_edge_keyframe_requests_total",
                                         "IDR requests sent to the inference service for video tiers", registry=r)
        self.draining = Gauge("framecast_edge_draining", "1 while the replica drains after SIGTERM", registry=r)
        self.first_frame = Histogram("framecast_edge_first_frame_seconds",
                                     "Accept to first frame written, per viewer", buckets=_LATENCY_BUCKETS,
                                     registry=r)
        self.connections = Gauge("framecast_edge_connections", "Open client TCP connections (HTTP and WebSocket)",
                                 registry=r)
        self.connection_limit = Gauge("framecast_edge_connection_limit",
                                      "Most open client connections (FRAMECAST_MAX_CONNECTIONS, fitted to the fd "
                                      "limit)", registry=r)
        self.connections_refused = Counter("framecast_edge_connections_refused_total",
                                           "Connections refused before their request was parsed, by reason",
                                           ["reason"], registry=r)
        self.connections_cut = Counter("framecast_edge_connections_cut_total",
                                       "WebSocket connections cut for client errors, by reason", ["reason"],
                                       registry=r)
        for reason in REFUSE_REASONS:
            self.connections_refused.labels(reason)
        for reason in CUT_REASONS:
            self.connections_cut.labels(reason)
        self.closes.labels("other")
        for d in ("up", "down"):
            self.tier_switches.labels(d)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for code in CLOSE_CODES:
            self.closes.labels(str(code))
        for kind in CONTROL_TYPES:
            self.control.labels(kind)
        # hot-path children resolved once (a labels() lookup costs a lock and a dict per event)
        self.acks = self.control.labels("ack")
        self._streams: dict[str, StreamCounters] = {}

    def stream(self, stream: str) -> StreamCounters:
        """The sent/bytes/drop counters of one stream (created at zero on first use, then reused)."""
        counters = self._streams.get(stream)
        if counters is None:
            counters = self._streams[stream] = StreamCounters(self, stream)
        return counters

    def tier_seen(self, stream: str, tier: str) -> None:
        self.stream(stream).sent(tier)


class StreamCounters:
    """One stream's hot-path counter children: a viewer session holds its stream's."""

    def __init__(self, metrics: EdgeMetrics, stream: str) -> None:
        self._metrics, self.name = metrics, stream
        self.bytes_sent = metrics.bytes_sent.labels(stream)
        self._drops = {reason: metrics.drops.labels(stream, reason) for reason in DROP_REASONS}
        self.drop_queue_full = self._drops["queue_full"]
        self.drop_stale = self._drops["stale"]
        self._sent: dict[str, Any] = {}

    def sent(self, tier: str) -> Any:
        child = self._sent.get(tier)
        if child is None:
            child = self._sent[tier] = self._metrics.frames_sent.labels(self.name, tier)
        return child

    def drop(self, reason: str) -> Any:
        child = self._drops.get(reason)
        if child is None:
            child = self._drops[reason] = self._metrics.drops.labels(self.name, reason)
        return child
