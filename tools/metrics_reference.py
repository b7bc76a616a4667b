"""Print the metrics reference tables of docs/operations.md from the services' metrics modules.

Reads the metric objects themselves (framecast.inference.metrics and
framecast.edge.metrics.EdgeMetrics), so names, types, labels and help texts
are the ones the services export. tests/deploy checks that every metric is
documented.

    .venv/bin/python -m tools.metrics_reference
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase


def _suffix(kind: str, name: str) -> str:
    return "_total" if kind == "counter" and not name.endswith("_total") else ""


def rows(metrics: list[MetricWrapperBase]) -> list[tuple[str, str, str, str]]:
    out = []
    for m in metrics:
        kind = str(m._type)
        name = m._name + _suffix(kind, m._name)
        labels = ", ".join(f"`{label}`" for label in m._labelnames) or "-"
        out.append((str(name), kind, labels, str(m._documentation)))
    return sorted(out)


def inference_metrics() -> list[MetricWrapperBase]:
    from framecast.inference import metrics

    return [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]


def edge_metrics() -> list[MetricWrapperBase]:
    from framecast.edge.metrics import EdgeMetrics

    return [v for v in vars(EdgeMetrics(CollectorRegistry())).values() if isinstance(v, MetricWrapperBase)]


def table(metrics: list[MetricWrapperBase]) -> str:
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    lines += [f"| `{n}` | {k} | {labels} | {doc} |" for n, k, labels, doc in rows(metrics)]
    return "\n".join(lines)


def main() -> int:
    print("### Inference service (`framecast_inference_*`, port 9101)\n")
    print(table(inference_metrics()))
    print("\n### Edge replicas (`framecast_edge_*`, `/metrics` on port 8000)\n")
    print(table(edge_metrics()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
