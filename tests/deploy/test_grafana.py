"""Static checks of the provisioned Grafana datasource and dashboard (queries are run in test_dashboard.py)."""

from __future__ import annotations

import json
from typing import Any

import yaml  # type: ignore[import-untyped]
from tools.build_dashboard import DASHBOARD_JSON, panel_queries, render

from tests.deploy.conftest import ROOT

DATASOURCE_UID = "framecast-prometheus"
# what the issue asks the dashboard to show, as (title fragment) -> found in some panel title
REQUIRED_PANELS = ("Publish FPS by stream", "Delivered FPS by tier", "Viewers per replica", "Glass-to-glass latency",
                   "Edge drops by reason", "Bytes sent to viewers", "Stage time", "Encode time per tier",
                   "Bus reader lag", "Redis memory", "CPU per process", "Resident memory per process", "Alert states")


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_JSON.read_text())
    return dashboard


def test_datasource_has_fixed_uid() -> None:
    conf = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (ds,) = conf["datasources"]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"


def test_dashboard_provider_points_at_the_mounted_folder() -> None:
    conf = yaml.safe_load((ROOT / "grafana" / "provisioning" / "dashboards" / "framecast.yml").read_text())
    (provider,) = conf["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_json_is_generated_from_tools_build_dashboard() -> None:
    assert DASHBOARD_JSON.read_text() == render(), "run: .venv/bin/python -m tools.build_dashboard"


def test_every_panel_uses_the_provisioned_datasource() -> None:
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]


def test_variables_stream_and_replica() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert set(variables) == {"stream", "replica"}
    for var in variables.values():
        assert var["datasource"]["uid"] == DATASOURCE_UID and var["includeAll"] and var["allValue"] == ".*"
    queries = [expr for _, _, expr in panel_queries(_dashboard())]
    assert any("$stream" in q for q in queries) and any("$replica" in q for q in queries)


def test_required_panels_present_and_ids_unique() -> None:
    dashboard = _dashboard()
    titles = [p["title"] for p in dashboard["panels"]]
    for required in REQUIRED_PANELS:
        assert any(required in t for t in titles), f"no panel {required!r}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "framecast-overview"
