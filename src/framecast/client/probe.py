"""The seed's "bandwidth test", done properly: what tier and frame rate does this link carry?

Three measurements against a live edge:
1. RTT: small HTTP requests (`/healthz`) on one keep-alive connection, so frame
   traffic does not queue in front of them.
2. Per tier: the viewer pins each tier in turn and acks every frame on arrival;
   the edge's ack-paced sender then delivers what the link carries at that
   tier's frame size, capped by the source rate.
3. Throughput beyond the source rate: a burst of `/snapshot/{stream}.jpg`
   downloads of known size over a few parallel keep-alive connections (skipped,
   and reported as such, when the edge has no snapshot endpoint).
"""

from __future__ import annotations

import asyncio
import http.client
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from framecast.client.errors import ClientError, ConnectError
from framecast.client.http import HttpClient
from framecast.client.stats import percentile
from framecast.client.subscription import Subscription
from framecast.client.urls import Endpoint, resolve
from framecast.ladder import codec_family

CARRY_FRACTION = 0.9  # a tier "carries" when it reaches this fraction of the source frame rate


@dataclass(slots=True)
class TierMeasurement:
    name: str
    width: int
    height: int
    quality: int
    codec: str = "jpeg"
    frames: int = 0
    fps: float = 0.0
    frame_bytes: float = 0.0
    kbit_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    link_fps: float | None = None  # throughput / frame size, when the burst ran


@dataclass(slots=True)
class ProbeResult:
    url: str
    stream: str
    rtt_ms: dict[str, float]
    source_fps: float
    throughput_mbit_s: float | None
    throughput_method: str  # "snapshot-burst", or "stream" (a lower bound: delivered rate)
    burst: dict[str, Any]
    tiers: list[TierMeasurement] = field(default_factory=list)
    recommended_tier: str | None = None
    recommended_fps: float = 0.0
    first_frame_ms: float | None = None
    connect_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _measure_rtt(ep: Endpoint, count: int, timeout: float) -> list[float]:
    client = HttpClient(ep, timeout)
    try:
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            status, _ = client.get("/healthz")
            samples.append((time.perf_counter() - t0) * 1000.0)
            if status >= 500 and status != 503:
                break
        return samples
    except OSError as exc:
        raise ConnectError(f"cannot reach {ep.host}:{ep.port}: {exc.strerror or exc}") from None
    except http.client.HTTPException as exc:
        raise ConnectError(f"{ep.host}:{ep.port} does not answer HTTP: {exc!r}") from None
    finally:
        client.close()


def _burst_worker(ep: Endpoint, path: str, deadline: float, max_requests: int, timeout: float,
                  token: str) -> tuple[int, int]:
    client = HttpClient(ep, timeout, token)
    requests = size = 0
    try:
        while time.perf_counter() < deadline and requests < max_requests:
            status, body = client.get(path)
            if status != 200:
                return (requests, -status) if requests == 0 else (requests, size)
            requests += 1
            size += len(body)
    except (OSError, http.client.HTTPException):
        pass
    finally:
        client.close()
    return requests, size


async def _snapshot_burst(ep: Endpoint, tier: str | None, seconds: float, connections: int,
                          max_requests: int, io_timeout: float, token: str = "") -> dict[str, Any]:
    path = f"/snapshot/{ep.stream}.jpg" + (f"?tier={tier}" if tier else "")
    t0 = time.perf_counter()
    deadline = t0 + seconds
    results = await asyncio.gather(*(asyncio.to_thread(_burst_worker, ep, path, deadline,
                                                       max_requests // connections, io_timeout, token)
                                      for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    requests = sum(r for r, _ in results)
    size = sum(s for _, s in results if s > 0)
    statuses = [-s for r, s in results if r == 0 and s < 0]
    return {"path": path, "connections": connections, "requests": requests, "bytes": size,
            "seconds": round(elapsed, 3), "status": statuses[0] if statuses and not requests else 200,
            "frame_bytes": round(size / requests) if requests else 0,
            "mbit_s": round(size * 8 / 1e6 / elapsed, 2) if requests and elapsed > 0 else None}


async def _measure_tier(sub: Subscription, m: TierMeasurement, seconds: float, pin: bool) -> None:
    if pin:
        await sub.set(tier=m.name)
    latencies: list[float] = []
    sizes: list[int] = []
    first: float | None = None
    last = 0.0
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            frame = await sub.next(timeout=left)
        except TimeoutError:
            break
        if frame is None:
            break
        if pin and frame.tier_name != m.name:
            continue  # frames of the previous tier still in flight
        if first is None:
            first = frame.received_at
        last = frame.received_at
        latencies.append(frame.latency_ms)
        sizes.append(frame.message_bytes)
    m.frames = len(sizes)
    if first is not None and len(sizes) > 1 and last > first:
        m.fps = round((len(sizes) - 1) / (last - first), 2)
    if sizes:
        m.frame_bytes = round(sum(sizes) / len(sizes), 1)
        m.kbit_s = round(m.fps * m.frame_bytes * 8 / 1000.0, 1)
        m.latency_p50_ms = round(percentile(latencies, 50), 2)
        m.latency_p95_ms = round(percentile(latencies, 95), 2)


def recommend(tiers: list[TierMeasurement], source_fps: float) -> tuple[str | None, float]:
    """Best-quality tier (ladder order) that reaches CARRY_FRACTION of the source rate, else the fastest."""
    measured = [t for t in tiers if t.frames > 1]
    if not measured:
        return None, 0.0
    def carried(t: TierMeasurement) -> float:
        return min(t.fps, t.link_fps) if t.link_fps is not None else t.fps
    for t in measured:
        if source_fps > 0 and carried(t) >= CARRY_FRACTION * source_fps:
            return t.name, round(carried(t), 2)
    best = max(measured, key=carried)
    return best.name, round(carried(best), 2)


async def probe(url: str, *, stream: str | None = None, seconds_per_tier: float = 2.0, burst_seconds: float = 1.5,
                burst_connections: int = 4, burst_max_requests: int = 400, rtt_samples: int = 10,
                io_timeout: float = 10.0, client_id: str = "", token: str = "",
                codecs: Sequence[str] = ("h264", "jpeg"),
                on_progress: Callable[[str], None] | None = None) -> ProbeResult:
    """Measure RTT, per-tier delivered FPS and raw throughput to an edge; see the module docstring.

    `codecs` are those of the viewer the answer is for: by default a browser's (H.264 tiers first, then
    JPEG), so the recommendation is a tier such a viewer gets. `token` is the viewer token when the edge
    has auth on. `on_progress` hears one line per step while the probe measures (it takes seconds).
    """
    if seconds_per_tier <= 0 or burst_seconds < 0 or burst_connections < 1 or rtt_samples < 1:
        raise ClientError("probe durations must be positive")
    say = on_progress or (lambda _message: None)
    ep = resolve(url, stream)
    say(f"RTT: {rtt_samples} requests to {ep.http_base}/healthz")
    rtts = await asyncio.to_thread(_measure_rtt, ep, rtt_samples, io_timeout)
    t0 = time.monotonic()
    sub = Subscription(url, stream=stream, ack="received", reconnect=False, open_timeout=io_timeout,
                       client_id=client_id or "framecast-probe", token=token, codecs=codecs)
    async with sub:
        connect_ms = (time.monotonic() - t0) * 1000.0
        # the tiers this viewer decodes (a JPEG-only probe cannot pin a video tier: the edge refuses it)
        ladder = [t for t in sub.tiers if codec_family(t.codec) in sub.codecs]
        tiers = [TierMeasurement(t.name, t.width, t.height, t.quality, codec_family(t.codec)) for t in ladder]
        if not tiers:
            tiers = [TierMeasurement(sub.tier or "default", 0, 0, 0)]
        for i, m in enumerate(tiers, 1):
            say(f"tier {m.name} ({m.codec}, {i}/{len(tiers)}): measuring for {seconds_per_tier:g} s")
            await _measure_tier(sub, m, seconds_per_tier, pin=bool(ladder))
            say(f"tier {m.name}: {m.fps:.1f} fps, {m.frame_bytes / 1000:.1f} kB/frame")
        if ladder:
            await sub.set(tier="auto")
        first_frame_ms = sub.stats.summary(time.monotonic()).first_frame_ms
        source_fps = sub.hello.fps if sub.hello and sub.hello.fps > 0 else max(t.fps for t in tiers)
    burst: dict[str, Any] = {"skipped": True}
    throughput: float | None = None
    method = "stream"
    if burst_seconds > 0:
        # snapshots are JPEG: the burst downloads the best JPEG tier (the edge's default when none was measured)
        best = next((t.name for t in tiers if t.codec == "jpeg"), None) if ladder else None
        say(f"throughput: {burst_connections} connections downloading snapshots for {burst_seconds:g} s")
        burst = await _snapshot_burst(ep, best, burst_seconds, burst_connections, burst_max_requests, io_timeout,
                                      token)
        if burst["mbit_s"] is not None:
            throughput, method = burst["mbit_s"], "snapshot-burst"
    if throughput is None:
        throughput = round(max((t.kbit_s for t in tiers), default=0.0) / 1000.0, 2)
    else:
        for m in tiers:
            if m.frame_bytes:
                m.link_fps = round(throughput * 1e6 / 8 / m.frame_bytes, 1)
    name, fps = recommend(tiers, source_fps)
    return ProbeResult(
        url=url, stream=ep.stream,
        rtt_ms={"min": round(min(rtts), 3), "p50": round(percentile(rtts, 50), 3),
                "max": round(max(rtts), 3), "samples": len(rtts)},
        source_fps=round(source_fps, 2), throughput_mbit_s=throughput, throughput_method=method, burst=burst,
        tiers=tiers, recommended_tier=name, recommended_fps=fps, first_frame_ms=first_frame_ms,
        connect_ms=round(connect_ms, 1),
    )
