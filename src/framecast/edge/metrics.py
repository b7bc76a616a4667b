"""Every Prometheus metric of the edge, in one registry per app (no per-viewer labels).

Series with known label values are created at zero so that dashboards and
alerts see them before the first event. Stream- and tier-labelled series
appear when a stream's tier is first read (stream names are bounded: only
streams the bus knows get a viewer).

The families counted per frame or per ack (frames and bytes sent, drops,
control messages, send-to-ack and glass-to-glass histograms, frames in flight)
are plain integers turned into samples at scrape time (`HotCounter`,
`HotHistogram`); viewers add their own counts at scrape time too (`live`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from framecast import constants as C

DROP_REASONS = ("queue_full", "stale", "tier_switch",
                # video tiers (framecast.edge.gop): waiting for a keyframe, fell behind, replaced by a keyframe,
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


class IntCount:
    """One series of a `HotCounter`: a plain integer (no lock: the event loop is the only writer)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


class HotCounter:
    """A counter family for per-frame and per-ack events: plain integers, turned into samples at scrape time.

    Same calls as prometheus_client's Counter for what the edge uses (`labels(...).inc(n)`, `inc(n)`); an
    increment is one attribute add instead of a lock, a dict lookup and a float add.
    """

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = ()) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.series: dict[tuple[str, ...], IntCount] = {}
        self._plain = self.labels() if not self.labelnames else None
        # counts still held by live viewers (plain ints on each viewer), added at scrape time
        self.live: Callable[[], Iterable[tuple[tuple[str, ...], int]]] | None = None

    def labels(self, *values: str) -> IntCount:
        child = self.series.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}")
            child = self.series[values] = IntCount()
        return child

    def inc(self, n: int = 1) -> None:
        assert self._plain is not None, "a labelled counter needs labels()"
        self._plain.value += n

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        totals = {values: child.value for values, child in tuple(self.series.items())}
        if self.live is not None:
            for values, n in self.live():
                totals[values] = totals.get(values, 0) + n
        for values, total in totals.items():
            family.add_metric(values, total)
        return family


class HotHistogram:
    """A histogram fed on the hot path: one bisect and two adds per observation, samples built at scrape."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative, buckets = 0, []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric([], buckets, self.sum)
        return family


_Family = TypeVar("_Family", HotCounter, HotHistogram)


class HotCollector(Collector):
    """Exports the hot-path families of one replica (registered once per registry)."""

    def __init__(self) -> None:
        self.families: list[HotCounter | HotHistogram] = []

    def add(self, family: _Family) -> _Family:
        self.families.append(family)
        return family

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.collect()


class EdgeMetrics:
    """The edge's metric objects, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        if registry is None:  # a private registry: export the process' CPU, memory and fds like the default one
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        hot = self.hot = HotCollector()
        r.register(hot)
        self.viewers = Gauge("framecast_edge_viewers", "Connected viewers by stream", ["stream"], registry=r)
        # a gauge: no _total (that suffix is a counter's); the sum of framecast_edge_viewers plus viewers between
        # accept and admission
        self.connected_viewers = Gauge("framecast_edge_connected_viewers", "Connected viewers on this replica",
                                       registry=r)
        self.frames_sent = hot.add(HotCounter("framecast_edge_frames_sent_total",
                                              "Frames written to viewers by stream and tier", ["stream", "tier"]))
        self.bytes_sent = hot.add(HotCounter("framecast_edge_bytes_sent_total",
                                             "Frame bytes written to viewers by stream", ["stream"]))
        self.drops = hot.add(HotCounter("framecast_edge_frames_dropped_total",
                                        "Frames a viewer did not get, by stream and reason (queue_full: its queue "
                                        "overflowed; stale: a newer frame replaced it while the window was closed; "
                                        "tier_switch)", ["stream", "reason"]))
        self.glass_to_glass = hot.add(HotHistogram(
            "framecast_edge_glass_to_glass_seconds",
            "Capture to viewer ack (ack arrival on the edge clock minus capture_us; includes the ack's way back)",
            _LATENCY_BUCKETS))
        self.frame_delay = hot.add(HotHistogram("framecast_edge_frame_delay_seconds",
                                                "Edge send to viewer ack of a frame", _LATENCY_BUCKETS))
        self.inflight = hot.add(HotHistogram("framecast_edge_inflight_frames",
                                             "Unacknowledged frames when a frame is sent",
                                             (0, 1, 2, 3, 4, 6, 8, 16, 32)))
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
        self.control = hot.add(HotCounter("framecast_edge_control_messages_total", "Control messages from viewers",
                                          ["type"]))
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
        # hot-path children resolved once
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
        self._sent: dict[str, IntCount] = {}

    def sent(self, tier: str) -> IntCount:
        child = self._sent.get(tier)
        if child is None:
            child = self._sent[tier] = self._metrics.frames_sent.labels(self.name, tier)
        return child

    def drop(self, reason: str) -> IntCount:
        child = self._drops.get(reason)
        if child is None:
            child = self._drops[reason] = self._metrics.drops.labels(self.name, reason)
        return child
