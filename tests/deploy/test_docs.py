"""docs/operations.md stays true to the code: every metric documented, the dashboard picture present."""

from __future__ import annotations

import re

from tools.metrics_reference import edge_metrics, inference_metrics, rows

from tests.deploy.conftest import ROOT

DOC = ROOT / "docs" / "operations.md"


def test_every_metric_is_in_the_reference() -> None:
    text = DOC.read_text()
    names = [name for name, *_ in rows(inference_metrics() + edge_metrics())]
    assert len(names) > 20
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"not documented in docs/operations.md (run python -m tools.metrics_reference): {missing}"


def test_metric_names_follow_the_conventions() -> None:
    for name, kind, labels, _ in rows(inference_metrics() + edge_metrics()):
        assert name.startswith(("framecast_inference_", "framecast_edge_")), name
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes", "_frames")), name
        assert not {"viewer", "client_id", "viewer_id", "ip"} & {x.strip("` ") for x in labels.split(",")}, name


def test_pictures_exist() -> None:
    for ref in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", DOC.read_text()):
        assert (DOC.parent / ref).is_file(), ref
