"""Generate grafana/dashboards/framecast.json from the panel list below.

The dashboard is code: panels, queries and units live here, the JSON is its
output (checked in, provisioned by Grafana, compared with this script's output
by tests/deploy). Every query is evaluated against a live Prometheus in
tests/deploy/test_dashboard.py; one that returns nothing fails the test.

    .venv/bin/python -m tools.build_dashboard            # rewrite the JSON
    .venv/bin/python -m tools.build_dashboard --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_JSON = ROOT / "grafana" / "dashboards" / "framecast.json"
DATASOURCE = {"type": "prometheus", "uid": "framecast-prometheus"}

# selectors reused by the queries; $stream and $replica are the dashboard variables
EDGE = 'job="edge", instance=~"$replica"'
EDGE_STREAM = EDGE + ', stream=~"$stream"'  # the edge's frame, byte and drop counters carry the stream
INFERENCE_OF_STREAM = 'max by (job, instance, stream) (framecast_inference_info{stream=~"$stream"})'
RI = "$__rate_interval"


def per_stream(expr: str) -> str:
    """Attach the stream label of the inference instance (one stream per instance) to `expr`."""
    return f"{expr} * on (job, instance) group_left (stream) {INFERENCE_OF_STREAM}"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | table
    width: int = 8
    height: int = 8
    description: str = ""
    stack: bool = False
    thresholds: tuple[tuple[str, float | None], ...] = field(default_factory=tuple)


def quantiles(metric: str, by: str, sel: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99),
              legend_by: str = "") -> tuple[Target, ...]:
    """histogram_quantile targets, one per quantile."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{legend_by}}}}}" if legend_by else ""
    return tuple(Target(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{sel}}}[{RI}])))",
                        f"p{round(q * 100)}{suffix}") for q in qs)


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("Overview", (
        Panel("Viewers", (Target(f'sum(framecast_edge_viewers{{{EDGE}, stream=~"$stream"}})', "viewers"),),
              kind="stat", width=4, height=4, description="Viewers connected to the selected replicas"),
        Panel("Publish FPS", (Target("sum(" + per_stream(
            f'sum by (job, instance) (rate(framecast_inference_frames_total{{stage="publish", outcome="ok"}}[{RI}]))'
        ) + ")", "fps"),), kind="stat", width=4, height=4, unit="fps",
              description="Frames per second the inference services XADD to Redis (selected streams)"),
        Panel("Delivered FPS", (Target(f"sum(rate(framecast_edge_frames_sent_total{{{EDGE_STREAM}}}[{RI}]))", "fps"),),
              kind="stat", width=4, height=4, unit="fps", description="Frames per second written to all viewers"),
        Panel("Glass-to-glass p95", (Target(
            f"histogram_quantile(0.95, sum by (le) (rate(framecast_edge_glass_to_glass_seconds_bucket{{{EDGE}}}"
            f"[{RI}])))", "p95"),), kind="stat", width=4, height=4, unit="s",
              thresholds=(("green", None), ("orange", 0.25), ("red", 0.5))),
        Panel("Edge replicas up", (Target('sum(up{job="edge"})', "up"),), kind="stat", width=4, height=4,
              description="Replicas Prometheus scrapes successfully (found through DNS discovery)"),
        Panel("Alerts firing", (Target('count(ALERTS{alertstate="firing"}) or vector(0)', "firing"),),
              kind="stat", width=4, height=4, thresholds=(("green", None), ("red", 1))),
    )),
    ("Frames", (
        Panel("Publish FPS by stream", (Target(per_stream(
            f'sum by (job, instance) (rate(framecast_inference_frames_total{{stage="publish", outcome="ok"}}[{RI}]))'
        ), "{{stream}}"),), unit="fps", description="Frames per second each stream's inference service publishes"),
        Panel("Published FPS by tier", (Target(
            f"sum by (stream, tier) ({per_stream(f'rate(framecast_inference_published_frames_total[{RI}])')})",
            "{{stream}} {{tier}}"),), unit="fps",
              description="Tiers are encoded only while an edge asks for them (demand keys)"),
        Panel("Delivered FPS by tier", (Target(
            f"sum by (tier) (rate(framecast_edge_frames_sent_total{{{EDGE_STREAM}}}[{RI}]))", "{{tier}}"),),
              unit="fps", stack=True, description="Frames written to viewers, summed over viewers"),
        Panel("Viewers per replica", (Target(
            f'sum by (instance) (framecast_edge_viewers{{{EDGE}, stream=~"$stream"}})', "{{instance}}"),),
              stack=True),
        Panel("Bus readers per replica", (Target(
            f"sum by (instance) (framecast_edge_bus_readers{{{EDGE}}})", "{{instance}}"),),
              description="One reader per stream and tier per replica, never one per viewer"),
        Panel("Tier switches", (Target(
            f"sum by (direction) (rate(framecast_edge_tier_switches_total{{{EDGE}}}[{RI}]))", "{{direction}}"),),
              unit="ops"),
    )),
    ("Latency", (
        Panel("Glass-to-glass latency", quantiles("framecast_edge_glass_to_glass_seconds", "", EDGE), unit="s",
              description="Capture to viewer ack, on the edge clock (includes the ack's way back)"),
        Panel("Bus reader lag", quantiles("framecast_edge_bus_reader_lag_seconds", "", EDGE, (0.5, 0.95, 0.99)),
              unit="s", description="Capture to the edge reading the frame from Redis"),
        Panel("Edge send to ack", quantiles("framecast_edge_frame_delay_seconds", "", EDGE, (0.5, 0.95)), unit="s",
              description="What the link and the viewer add: frame written to ack received"),
        Panel("Time to first frame", quantiles("framecast_edge_first_frame_seconds", "", EDGE, (0.5, 0.95)),
              unit="s", description="Accept to the first frame written (the edge keeps the newest frame)"),
        Panel("Capture to publish", quantiles("framecast_inference_capture_to_publish_seconds", "",
                                              'job="inference"', (0.5, 0.95)), unit="s"),
        Panel("In-flight frames per viewer", quantiles("framecast_edge_inflight_frames", "", EDGE, (0.5, 0.95)),
              description="Unacknowledged frames when a frame is sent (the latency window)"),
    )),
    ("Drops and bandwidth", (
        Panel("Edge drops by reason", (Target(
            f"sum by (reason) (rate(framecast_edge_frames_dropped_total{{{EDGE_STREAM}}}[{RI}]))", "{{reason}}"),),
              unit="fps", stack=True),
        Panel("Inference drops by reason", (Target(
            f'sum by (reason) (rate(framecast_inference_frames_dropped_total{{job="inference"}}[{RI}]))',
            "{{reason}}"),), unit="fps", stack=True),
        Panel("Viewers rejected and closed", (
            Target(f"sum by (reason) (rate(framecast_edge_rejected_viewers_total{{{EDGE}}}[{RI}]))",
                   "rejected {{reason}}"),
            Target(f"sum by (code) (rate(framecast_edge_closes_total{{{EDGE}}}[{RI}]))", "closed {{code}}")),
              unit="ops"),
        Panel("Bytes sent to viewers", (Target(
            f"sum by (instance) (rate(framecast_edge_bytes_sent_total{{{EDGE_STREAM}}}[{RI}]))", "{{instance}}"),),
              unit="Bps", stack=True),
        Panel("Redis egress and ingress", (
            Target(f'sum(rate(redis_net_output_bytes_total{{job="redis"}}[{RI}]))', "out (to edges)"),
            Target(f'sum(rate(redis_net_input_bytes_total{{job="redis"}}[{RI}]))', "in (from inference)")),
              unit="Bps", description="Capacity: egress = frames/s x tiers read x replicas x bytes per frame"),
        Panel("Encoded frame size by tier", (Target(
            f"sum by (tier) (rate(framecast_inference_encoded_bytes_sum[{RI}]))"
            f" / sum by (tier) (rate(framecast_inference_encoded_bytes_count[{RI}]))", "{{tier}}"),), unit="bytes"),
    )),
    ("Inference", (
        Panel("Stage time p95", quantiles("framecast_inference_stage_seconds", "stage", 'job="inference"', (0.95,),
                                          "stage"), unit="s",
              description="capture, inference, encode (all tiers in parallel), publish"),
        Panel("Encode time per tier p95", quantiles("framecast_inference_encode_seconds", "tier",
                                                    'job="inference"', (0.95,), "tier"), unit="s"),
        Panel("Tiers demanded", (Target('max by (tier) (framecast_inference_tier_demanded{job="inference"})',
                                        "{{tier}}"),),
              description="1 while some edge asks for the tier; others are not encoded"),
    )),
    ("Video (H.264 tiers)", (
        Panel("Keyframes by reason", (Target(
            f'sum by (tier, reason) (rate(framecast_inference_video_keyframes_total{{job="inference"}}[{RI}]))',
            "{{tier}} {{reason}}"),), unit="ops", stack=True,
              description="IDRs made: first, interval (every keyframe_interval_s), requested (a viewer joined, "
                          "fell behind or lost its decoder), resumed (demand came back)"),
        Panel("Keyframe requests", (
            Target(f"sum by (instance) (rate(framecast_edge_keyframe_requests_total{{{EDGE}}}[{RI}]))",
                   "edge {{instance}}"),
            Target(f'sum by (source, outcome) (rate(framecast_inference_video_keyframe_requests_total'
                   f'{{job="inference"}}[{RI}]))', "inference {{source}} {{outcome}}")), unit="ops",
              description="Edges ask (rate-limited per replica); the encoder coalesces requests inside its "
                          "minimum gap"),
        Panel("Video share of deliveries", (Target(
            f'sum(rate(framecast_edge_frames_sent_total{{{EDGE_STREAM}, tier=~"video.*"}}[{RI}]))'
            f" / sum(rate(framecast_edge_frames_sent_total{{{EDGE_STREAM}}}[{RI}]))", "video tiers"),),
              unit="percentunit",
              description="Frames sent on tiers named video* (the default ladder's H.264 tiers) over all frames sent"),
    )),
    ("Bus and Redis", (
        Panel("Redis memory", (
            Target('sum(redis_memory_used_bytes{job="redis"})', "used"),
            Target('sum(redis_memory_max_bytes{job="redis"})', "maxmemory")), unit="bytes",
              description="noeviction: at maxmemory every publish fails"),
        Panel("Bus errors", (
            Target(f"sum by (instance) (rate(framecast_edge_bus_errors_total{{{EDGE}}}[{RI}]))", "edge {{instance}}"),
            Target(f'sum by (op) (rate(framecast_inference_bus_errors_total{{job="inference"}}[{RI}]))',
                   "inference {{op}}")), unit="ops"),
        Panel("Redis up and clients", (
            Target('max(redis_up{job="redis"})', "up"),
            Target('sum(redis_connected_clients{job="redis"})', "clients")),),
    )),
    ("Processes", (
        Panel("CPU per process", (
            Target(f'sum by (job, instance) (rate(process_cpu_seconds_total{{job=~"edge|inference"}}[{RI}]))',
                   "{{job}} {{instance}}"),
            Target(f'sum(rate(redis_cpu_user_seconds_total{{job="redis"}}[{RI}])'
                   f' + rate(redis_cpu_sys_seconds_total{{job="redis"}}[{RI}]))', "redis")),
              unit="percentunit",
              description="1.0 = one core; an edge replica is one event loop, Redis serves commands on one thread"),
        Panel("Resident memory per process", (
            Target('sum by (job, instance) (process_resident_memory_bytes{job=~"edge|inference"})',
                   "{{job}} {{instance}}"),
            Target('sum(redis_memory_used_rss_bytes{job="redis"})', "redis")), unit="bytes"),
        Panel("Deliveries per edge CPU-second", (Target(
            f"sum by (instance) (rate(framecast_edge_frames_sent_total{{{EDGE}}}[{RI}]))"
            f" / sum by (instance) (rate(process_cpu_seconds_total{{{EDGE}}}[{RI}]))", "{{instance}}"),),
              description="Capacity planning: frames written per second of edge CPU"),
        Panel("Alert states", (Target("sum by (alertname, alertstate, severity) (ALERTS)", "", instant=True),),
              kind="table", width=24, description="Prometheus alerts pending or firing (rules: prometheus/alerts.yml)"),
    )),
)


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, t in enumerate(panel.targets):
        target: dict[str, Any] = {"datasource": DATASOURCE, "refId": chr(ord("A") + i), "expr": t.expr,
                                  "legendFormat": t.legend or "__auto", "range": not t.instant,
                                  "instant": t.instant}
        if t.instant:
            target["format"] = "table"
        targets.append(target)
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.thresholds:
        defaults["thresholds"] = {"mode": "absolute",
                                  "steps": [{"color": c, "value": v} for c, v in panel.thresholds]}
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if panel.stack else 0,
                              "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
                              "showPoints": "never"}
    out: dict[str, Any] = {"id": pid, "type": panel.kind, "title": panel.title, "datasource": DATASOURCE,
                           "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
                           "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []}}
    if panel.description:
        out["description"] = panel.description
    if panel.kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    elif panel.kind == "stat":
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    else:
        out["options"] = {"showHeader": True}
        out["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return out


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": query, "definition": query, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*", "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0}


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        x, row_height = 0, 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            panels.append(_panel_json(panel, pid, x, y))
            pid, x, row_height = pid + 1, x + panel.width, max(row_height, panel.height)
        y += row_height
    return {
        "uid": "framecast-overview",
        "title": "framecast",
        "description": "Frames from the inference service through Redis and the edge replicas to the viewers. "
                       "Generated by tools/build_dashboard.py; see docs/operations.md.",
        "tags": ["framecast"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "5s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-15m", "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
        "templating": {"list": [
            _variable("stream", "stream", "label_values(framecast_inference_info, stream)"),
            _variable("replica", "edge replica", 'label_values(up{job="edge"}, instance)'),
        ]},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query panel in a dashboard JSON."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["refId"], target["expr"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in JSON differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if DASHBOARD_JSON.read_text() != text:
            print(f"{DASHBOARD_JSON} is stale: run .venv/bin/python -m tools.build_dashboard", file=sys.stderr)
            return 1
        return 0
    DASHBOARD_JSON.write_text(text)
    print(f"wrote {DASHBOARD_JSON} ({sum(1 for _ in panel_queries(build()))} queries)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
