"""Python client for framecast edges: subscribe to a stream, get decoded frames, measure the link.

    async with framecast.connect("http://127.0.0.1:8000", stream="demo") as sub:
        async for frame in sub:
            print(frame.frame_id, frame.latency_ms, frame.image().shape)

See docs/viewers.md.
"""

from __future__ import annotations

try:
    import websockets  # noqa: F401 (the client's one dependency beyond the core: say so when it is missing)
except ImportError as exc:
    raise ImportError(f"framecast's client needs the `client` extra: pip install 'framecast[client]' "
                      f"(missing: {exc.name})", name=exc.name) from exc

from framecast.client.errors import ClientError, ConnectError, ConnectionLost, ProtocolError
from framecast.client.http import list_streams
from framecast.client.probe import ProbeResult, TierMeasurement, probe
from framecast.client.reconnect import ReconnectPolicy
from framecast.client.stats import LatencyHistogram, StatsSnapshot, StatsSummary, StatsWindow
from framecast.client.subscription import DEFAULT_URL, AckMode, ReceivedFrame, Subscription, connect
from framecast.client.sync import SyncSubscription, connect_sync
from framecast.client.urls import Endpoint, resolve

__all__ = [
    "DEFAULT_URL",
    "AckMode",
    "ClientError",
    "ConnectError",
    "ConnectionLost",
    "Endpoint",
    "LatencyHistogram",
    "ProbeResult",
    "ProtocolError",
    "ReceivedFrame",
    "ReconnectPolicy",
    "StatsSnapshot",
    "StatsSummary",
    "StatsWindow",
    "Subscription",
    "SyncSubscription",
    "TierMeasurement",
    "connect",
    "connect_sync",
    "list_streams",
    "probe",
    "resolve",
]
