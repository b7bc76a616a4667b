"""promtool on the shipped Prometheus config and alert rules, and the unit tests of every alert."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from tools.native_stack import render_prometheus

from tests.deploy.conftest import ROOT

PROM_DIR = ROOT / "prometheus"


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=PROM_DIR, timeout=120)


def test_promtool_check_config(promtool: str) -> None:
    done = _promtool(promtool, "check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in done.stdout + done.stderr


def test_promtool_check_rules(promtool: str) -> None:
    done = _promtool(promtool, "check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules(promtool: str) -> None:
    done = _promtool(promtool, "test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_resolving() -> None:
    tests = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())["tests"]
    fired: set[str] = set()
    resolved: dict[str, list[str]] = {}
    for case in tests:
        for check in case.get("alert_rule_test", []):
            name = check["alertname"]
            if check.get("exp_alerts"):
                fired.add(name)
            elif name in fired:  # an empty expectation after the alert fired: it resolved
                resolved.setdefault(name, []).append(check["eval_time"])
    alerts = set(_alerts())
    assert alerts - fired == set(), "alerts never shown firing"
    assert alerts - set(resolved) == set(), "alerts never shown resolving"


def test_alerts_cover_what_operators_need() -> None:
    alerts = _alerts()
    exprs = " ".join(rule["expr"] for rule in alerts.values())
    for needle in ("framecast_inference_published_frames_total", "framecast_edge_bus_reader_lag_seconds_bucket",
                   "framecast_edge_glass_to_glass_seconds_bucket", "framecast_edge_frames_dropped_total",
                   "framecast_edge_rejected_viewers_total", "redis_up", "redis_memory_max_bytes",
                   'up{job="edge"}'):
        assert needle in exprs, f"no alert on {needle}"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name


def test_every_runbook_link_has_a_section() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", doc, flags=re.M)}
    for name, rule in _alerts().items():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("docs/operations.md#")
        assert url.split("#", 1)[1] in anchors, f"{name}: no section for {url}"


def test_prometheus_scrapes_every_edge_replica_not_the_lb() -> None:
    conf = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in conf["scrape_configs"]}
    assert set(jobs) >= {"edge", "inference", "redis"}
    edge_sd = jobs["edge"]["dns_sd_configs"][0]
    assert edge_sd["names"] == ["edge"] and edge_sd["type"] == "A" and edge_sd["port"] == 8000
    assert jobs["inference"]["static_configs"][0]["targets"] == ["inference:9101"]
    assert jobs["redis"]["static_configs"][0]["targets"] == ["redis-exporter:9121"]
    assert "lb" not in yaml.safe_dump(conf)


def test_native_render_passes_promtool(promtool: str, tmp_path: Path) -> None:
    conf = render_prometheus(["127.0.0.1:8001", "127.0.0.1:8002"], ["127.0.0.1:9101"], ["127.0.0.1:9121"])
    conf["scrape_configs"][-1]["static_configs"][0]["targets"] = ["127.0.0.1:9090"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(conf))
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    edge = next(job for job in conf["scrape_configs"] if job["job_name"] == "edge")
    assert "dns_sd_configs" not in edge and len(edge["static_configs"][0]["targets"]) == 2
