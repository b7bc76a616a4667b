"""Write prometheus/alerts_test.yml: promtool unit tests of every alert in prometheus/alerts.yml.

Each case feeds series that make one alert fire and then resolve, and checks it
is not firing before its `for` has elapsed. Expected annotations are copied
from alerts.yml with the template values filled in here by hand, so a changed
annotation needs this script rerun (and a look at the diff):

    .venv/bin/python -m tools.gen_alert_tests && promtool test rules prometheus/alerts_test.yml
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = pathlib.Path(__file__).resolve().parents[1]
RULES = {r["alert"]: r for g in yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())["groups"]
         for r in g["rules"]}

def ann(alert: str, labels: dict[str, str], value_fmt: str | None = None) -> dict[str, str]:
    out = {}
    for k, v in RULES[alert]["annotations"].items():
        def sub(m: re.Match[str]) -> str:
            expr = m.group(1).strip()
            if expr.startswith("$labels."):
                return labels[expr[len("$labels."):]]
            if "$value" in expr:
                assert value_fmt is not None, (alert, expr)
                return value_fmt
            raise ValueError(expr)
        out[k] = re.sub(r"\{\{(.*?)\}\}", sub, v)
    return out

def alert(name: str, labels: dict[str, str], value_fmt: str | None = None) -> dict[str, Any]:
    labs = dict(labels)
    labs["severity"] = RULES[name]["labels"]["severity"]
    return {"exp_labels": labs, "exp_annotations": ann(name, labels, value_fmt)}

tests: list[dict[str, Any]] = []
def case(name: str, interval: str, series: list[tuple[str, str]],
         checks: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
    tests.append({"name": name, "interval": interval,
                  "input_series": [{"series": s, "values": v} for s, v in series],
                  "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": e} for t, a, e in checks]})

E = 'instance="10.1.0.2:8000",job="edge"'
case("edge replica down fires after 30s and resolves when it is back", "15s",
     [(f'up{{{E}}}', "1 1 0 0 0 0 1 1 1"), ('up{instance="10.1.0.3:8000",job="edge"}', "1x8")],
     [("45s", "FramecastEdgeReplicaDown", []),
      ("1m", "FramecastEdgeReplicaDown",
       [alert("FramecastEdgeReplicaDown", {"instance": "10.1.0.2:8000", "job": "edge"})]),
      ("2m", "FramecastEdgeReplicaDown", [])])
case("no edge replica at all", "15s",
     [(f'up{{{E}}}', "1 1 0 0 0 0 0 0 1 1 1")],
     [("1m", "FramecastNoEdgeReplicas", []),
      ("1m30s", "FramecastNoEdgeReplicas", [alert("FramecastNoEdgeReplicas", {})]),
      ("2m30s", "FramecastNoEdgeReplicas", [])])
INF = {"instance": "inference:9101", "job": "inference"}
case("inference down", "15s",
     [('up{instance="inference:9101",job="inference"}', "1 1 0 0 0 0 1 1 1")],
     [("45s", "FramecastInferenceDown", []),
      ("1m", "FramecastInferenceDown", [alert("FramecastInferenceDown", INF)]),
      ("2m", "FramecastInferenceDown", [])])
case("no frames published for a stream, then publishing again", "15s",
     [('framecast_inference_published_frames_total{instance="inference:9101",job="inference",tier="low"}',
       "0+30x8 240x10 270+30x10"),
      ('framecast_inference_published_frames_total{instance="inference:9101",job="inference",tier="high"}',
       "0+30x8 240x20"),
      ('framecast_inference_info{device="cpu",dtype="float32",encoder="simplejpeg",instance="inference:9101",'
       'job="inference",model="builtin",source="synthetic",stream="demo"}', "1x30")],
     [("3m30s", "FramecastNoFramesPublished", []),
      ("4m", "FramecastNoFramesPublished", [alert("FramecastNoFramesPublished", {**INF, "stream": "demo"})]),
      ("5m", "FramecastNoFramesPublished", [])])
R = {"instance": "redis-exporter:9121", "job": "redis"}
case("redis down", "15s",
     [('redis_up{instance="redis-exporter:9121",job="redis"}', "1 1 0 0 0 0 1 1 1")],
     [("45s", "FramecastRedisDown", []),
      ("1m", "FramecastRedisDown", [alert("FramecastRedisDown", R)]),
      ("2m", "FramecastRedisDown", [])])
case("redis exporter down", "15s",
     [('up{instance="redis-exporter:9121",job="redis"}', "1 1 0 0 0 0 0 0 1 1")],
     [("1m15s", "FramecastRedisExporterDown", []),
      ("1m30s", "FramecastRedisExporterDown", [alert("FramecastRedisExporterDown", R)]),
      ("2m15s", "FramecastRedisExporterDown", [])])
case("redis memory near maxmemory; no alert without a limit", "15s",
     [('redis_memory_used_bytes{instance="redis-exporter:9121",job="redis"}', "100 100 900x8 100 100 100"),
      ('redis_memory_max_bytes{instance="redis-exporter:9121",job="redis"}', "1000x12"),
      ('redis_memory_used_bytes{instance="other:9121",job="redis"}', "900x12"),
      ('redis_memory_max_bytes{instance="other:9121",job="redis"}', "0x12")],
     [("2m15s", "FramecastRedisMemoryNearMax", []),
      ("2m30s", "FramecastRedisMemoryNearMax", [alert("FramecastRedisMemoryNearMax", R, "90%")]),
      ("3m", "FramecastRedisMemoryNearMax", [])])
case("viewers rejected for capacity; draining rejections ignored", "15s",
     [(f'framecast_edge_rejected_viewers_total{{{E},reason="too_many_viewers"}}', "0+10x10 100x30"),
      (f'framecast_edge_rejected_viewers_total{{{E},reason="draining"}}', "0+50x40")],
     [("2m", "FramecastViewersRejected", []),
      ("2m30s", "FramecastViewersRejected",
       [alert("FramecastViewersRejected", {"instance": "10.1.0.2:8000", "job": "edge", "reason": "too_many_viewers"},
              "0.33")]),
      ("8m", "FramecastViewersRejected", [])])

def hist(metric: str, labels: str, buckets: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(f'{metric}_bucket{{{labels},le="{le}"}}', v) for le, v in buckets]

case("bus reader lag p95 above 250 ms, then back to normal", "30s",
     hist("framecast_edge_bus_reader_lag_seconds", E,
          [("0.1", "0x10 10+10x19"), ("0.25", "0x10 10+10x19"), ("0.5", "0+10x10 110+10x19"),
           ("+Inf", "0+10x10 110+10x19")]),
     [("2m", "FramecastBusReaderLagHigh", []),
      ("3m", "FramecastBusReaderLagHigh",
       [alert("FramecastBusReaderLagHigh", {"instance": "10.1.0.2:8000", "job": "edge"}, "487.5ms")]),
      ("8m", "FramecastBusReaderLagHigh", [])])
case("glass-to-glass p95 above 500 ms for 5 minutes, then back to normal", "30s",
     hist("framecast_edge_glass_to_glass_seconds", E,
          [("0.2", "0x14 10+10x15"), ("0.5", "0x14 10+10x15"), ("1", "0+10x14 150+10x15"),
           ("+Inf", "0+10x14 150+10x15")]),
     [("5m", "FramecastGlassToGlassLatencyHigh", []),
      ("6m", "FramecastGlassToGlassLatencyHigh", [alert("FramecastGlassToGlassLatencyHigh", {}, "975ms")]),
      ("13m", "FramecastGlassToGlassLatencyHigh", [])])
case("edge drops more than it delivers for 10 minutes", "1m",
     [(f'framecast_edge_frames_dropped_total{{{E},reason="stale"}}', "0+20x15 300x20"),
      (f'framecast_edge_frames_dropped_total{{{E},reason="queue_full"}}', "0x35"),
      (f'framecast_edge_frames_sent_total{{{E},tier="high"}}', "0+10x35")],
     [("10m", "FramecastEdgeDropRatioHigh", []),
      ("12m", "FramecastEdgeDropRatioHigh",
       [alert("FramecastEdgeDropRatioHigh", {"instance": "10.1.0.2:8000", "job": "edge"}, "66.67%")]),
      ("22m", "FramecastEdgeDropRatioHigh", [])])
case("inference drops a fifth of its frames; no_demand does not count", "1m",
     [('framecast_inference_frames_dropped_total{instance="inference:9101",job="inference",reason="inference_busy"}',
       "0+15x20 300x20"),
      ('framecast_inference_frames_dropped_total{instance="inference:9101",job="inference",reason="no_demand"}',
       "0+100x40"),
      ('framecast_inference_frames_total{instance="inference:9101",job="inference",outcome="ok",stage="capture"}',
       "0+30x40"),
      ('framecast_inference_frames_total{instance="inference:9101",job="inference",outcome="ok",stage="encode"}',
       "0+15x40")],
     [("5m", "FramecastInferenceDropRatioHigh", []),
      ("7m", "FramecastInferenceDropRatioHigh", [alert("FramecastInferenceDropRatioHigh", INF, "50%")]),
      ("26m", "FramecastInferenceDropRatioHigh", [])])

doc = {"rule_files": ["alerts.yml"], "evaluation_interval": "15s", "tests": tests}
head = ("# promtool unit tests of every alert in alerts.yml: each one fires (and not before its `for`),\n"
        "# then resolves.  Run: promtool test rules prometheus/alerts_test.yml\n")
(ROOT / "prometheus" / "alerts_test.yml").write_text(head + yaml.safe_dump(doc, sort_keys=False, width=120))
missing = set(RULES) - {c["alertname"] for t in tests for c in t["alert_rule_test"]}
print("untested:", missing)
