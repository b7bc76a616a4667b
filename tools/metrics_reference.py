"""Print the metrics reference tables of docs/operations.md from the services' metrics modules.

Reads the metric objects themselves (framecast.inference.metrics and
framecast.edge.metrics.EdgeMetrics), so names, types, labels and help texts
are the ones the services export. tests/deploy checks that every metric is
documented.

    .venv/bin/python -m tools.metrics_reference           # print the tables
    .venv/bin/python -m tools.metrics_reference --write   # rewrite them in docs/operations.md
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
BEGIN = "<!-- metrics-reference:begin"
END = "<!-- metrics-reference:end -->"


def _suffix(kind: str, name: str) -> str:
    return "_total" if kind == "counter" and not name.endswith("_total") else ""


def _label_values(m: MetricWrapperBase) -> dict[str, list[str]]:
    """Label values of the series that exist (created at zero by the service)."""
    values: dict[str, list[str]] = {}
    for family in m.collect():
        for sample in family.samples:
            for key, value in sample.labels.items():
                # stream names are the deployment's, not the code's: the column names the label only
                if key not in ("le", "stream") and value not in values.setdefault(key, []):
                    values[key].append(value)
    return values


def rows(metrics: list[MetricWrapperBase]) -> list[tuple[str, str, str, str]]:
    """(name, type, labels with their known values, help) of each metric, sorted by name."""
    out = []
    for m in metrics:
        kind = str(m._type)
        name = m._name + _suffix(kind, m._name)
        known = _label_values(m)
        labels = ", ".join(f"`{label}`" + (f" ({', '.join(known[label])})" if known.get(label) else "")
                           for label in m._labelnames) or "-"
        out.append((str(name), kind, labels, str(m._documentation)))
    return sorted(out)


def _parents(objects: Iterable[object]) -> list[MetricWrapperBase]:
    """The metrics among `objects`, without the labelled children kept for the hot path."""
    found: dict[int, MetricWrapperBase] = {}
    for obj in objects:
        if isinstance(obj, MetricWrapperBase) and not obj._labelvalues:
            found[id(obj)] = obj
    return list(found.values())


def inference_metrics() -> list[MetricWrapperBase]:
    from framecast.inference import metrics
    from framecast.ladder import DEFAULT_LADDER, parse_ladder

    metrics.init_series(t.name for t in parse_ladder(DEFAULT_LADDER))  # the zero series a service starts with
    return _parents(vars(metrics).values())


def edge_metrics() -> list[MetricWrapperBase]:
    from framecast.edge.metrics import EdgeMetrics

    metrics = EdgeMetrics(CollectorRegistry())
    metrics.stream("demo")  # the zero series a stream's first viewer creates (drop reasons)
    return _parents(vars(metrics).values())


def table(metrics: list[MetricWrapperBase]) -> str:
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    lines += [f"| `{n}` | {k} | {labels} | {doc} |" for n, k, labels, doc in rows(metrics)]
    return "\n".join(lines)


def reference() -> str:
    return (f"### Inference service (`framecast_inference_*`, port 9101)\n\n{table(inference_metrics())}\n\n"
            f"### Edge replicas (`framecast_edge_*`, `/metrics` on port 8000)\n\n{table(edge_metrics())}\n")


def write(doc: Path = DOC) -> bool:
    """Replace the block between the markers in docs/operations.md; True if it changed."""
    text = doc.read_text()
    start = text.index(BEGIN)
    start = text.index("\n", start) + 1
    end = text.index(END)
    new = text[:start] + reference() + text[end:]
    doc.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"rewrite the tables in {DOC.name}")
    args = parser.parse_args(argv)
    if args.write:
        print(f"{DOC}: {'updated' if write() else 'already up to date'}")
    else:
        print(reference(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
