"""Static checks of the provisioned Grafana datasource and dashboard (queries are run in test_dashboard.py)."""

from __future__ import annotations

import json
import re
from importlib import metadata
from typing import Any

import pytest
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


# set by Grafana's variable editor for display, absent from the Grafana 11 schema: the only field the model may drop
MODEL_MAY_DROP = re.compile(r"^\.templating\.list\[\d+\]\.definition: dropped$")


def _lost(src: Any, out: Any, path: str = "") -> list[str]:
    """Where `out` (the model's re-encoding) lost or changed what `src` (the JSON) says."""
    if isinstance(src, dict):
        if not isinstance(out, dict):
            return [f"{path}: became {type(out).__name__}"]
        return [lost for key, value in src.items()
                for lost in ([f"{path}.{key}: dropped"] if key not in out else _lost(value, out[key], f"{path}.{key}"))]
    if isinstance(src, list):
        if not isinstance(out, list) or len(out) != len(src):
            return [f"{path}: list changed"]
        return [lost for i, (a, b) in enumerate(zip(src, out, strict=True)) for lost in _lost(a, b, f"{path}[{i}]")]
    return [] if src == out else [f"{path}: {src!r} became {out!r}"]


def test_dashboard_loads_into_the_grafana_11_model() -> None:
    """grafana-foundation-sdk's Grafana 11 model (the 11.3 build, as the compose stack's Grafana) takes the JSON whole.

    A field Grafana 11 does not know (a typo, a renamed option) is dropped by the model, a panel type it does not
    know keeps untyped options: both fail here instead of when a user imports the dashboard.
    """
    sdk = pytest.importorskip("grafana_foundation_sdk", reason="dev dependency: make install")
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard, RowPanel

    assert metadata.version("grafana-foundation-sdk").endswith("!11.3.0"), sdk.__file__
    register_default_plugins()
    src = _dashboard()
    model = Dashboard.from_json(src)
    panels = [p for p in model.panels or [] if not isinstance(p, RowPanel)]
    assert len(panels) == len([p for p in src["panels"] if p["type"] != "row"])
    for panel in panels:
        # options decoded by the panel plugin's own model (an unknown type leaves a dict)
        assert type(panel.options).__module__ == f"grafana_foundation_sdk.models.{panel.type_val}", panel.title
        assert panel.targets, panel.title
    lost = [p for p in _lost(src, json.loads(json.dumps(model, cls=JSONEncoder))) if not MODEL_MAY_DROP.match(p)]
    assert not lost, "the Grafana 11 model does not take:\n" + "\n".join(lost)
