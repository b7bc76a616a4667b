"""Evaluate every query of the Grafana dashboard against a real Prometheus, and draw the panels.

Grafana does not run on these machines, so the dashboard is proven (and
pictured for docs/operations.md) by running each panel's PromQL, with the
dashboard variables substituted, through Prometheus' HTTP API and plotting
the results with matplotlib in the dashboard's layout.

    # against a running Prometheus (compose: http://127.0.0.1:9090)
    .venv/bin/python -m tools.render_dashboard --prometheus http://127.0.0.1:9090 --minutes 15 --out dash.png
    # start the native stack (Valkey, inference, 2 edges, nginx, Prometheus), drive viewers, then draw; the
    # values seen, with their provenance, go to the results docs/operations.md's table is generated from
    .venv/bin/python -m tools.render_dashboard --native --seconds 60 --out docs/img/dashboard.png \
        --results bench/results/dashboard.json && .venv/bin/python -m bench.report
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framecast.provenance import provenance
from tools.build_dashboard import DASHBOARD_JSON

# the values Grafana would put in for the variables when "All" is selected
DEFAULT_VARIABLES = {"$stream": "demo", "$replica": ".*", "$__rate_interval": "10s", "$__interval": "1s",
                     "$__range": "1m"}


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    out = expr
    # longest first: $__rate_interval before $__range...
    for name, value in sorted((variables or DEFAULT_VARIABLES).items(), key=lambda kv: -len(kv[0])):
        out = out.replace(name, value)
    return out


@dataclass
class QueryResult:
    panel: str
    ref: str
    expr: str
    series: list[dict[str, Any]]  # Prometheus matrix: [{"metric": {...}, "values": [[t, "v"], ...]}]
    legend: str = ""
    unit: str = ""  # the panel's Grafana unit (s, bytes, Bps, fps, ...)

    def finite_points(self) -> int:
        return sum(1 for s in self.series for _, v in s["values"] if math.isfinite(float(v)))

    def last_values(self) -> dict[str, float]:
        """Newest finite value of each series, keyed by its legend."""
        out: dict[str, float] = {}
        for s in self.series:
            finite = [float(v) for _, v in s["values"] if math.isfinite(float(v))]
            if finite:
                out[self.label(s["metric"])] = finite[-1]
        return out

    def label(self, metric: dict[str, str]) -> str:
        if self.legend and self.legend != "__auto":
            text = self.legend
            for key, value in metric.items():
                text = text.replace("{{" + key + "}}", value)
            return text
        return ",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__") or self.ref


def dashboard_panels(path: Path = DASHBOARD_JSON) -> list[dict[str, Any]]:
    return [p for p in json.loads(path.read_text())["panels"] if p["type"] != "row"]


def evaluate(prometheus: Any, start: float, end: float, step: float = 1.0,
             variables: dict[str, str] | None = None) -> list[QueryResult]:
    """Run every panel target over [start, end]; `prometheus` is a tools.native_stack.Prometheus."""
    results = []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = substitute(target["expr"], variables)
            series = prometheus.query_range(expr, start, end, step)
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            results.append(QueryResult(panel["title"], target["refId"], expr, series, target.get("legendFormat", ""),
                                       unit))
    return results


def variable_values(prometheus: Any) -> dict[str, list[str]]:
    """Values of the dashboard variables, from their `label_values(selector, label)` queries."""
    out = {}
    for var in json.loads(DASHBOARD_JSON.read_text())["templating"]["list"]:
        query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
        assert query.startswith("label_values(") and query.endswith(")"), query
        selector, label = query[len("label_values("):-1].rsplit(",", 1)
        out[var["name"]] = list(prometheus.api(f"label/{label.strip()}/values", **{"match[]": selector.strip()}))
    return out


def plot(results: list[QueryResult], out: Path, title: str = "framecast (queries run by Prometheus)") -> None:
    """Draw one small chart per panel, in dashboard order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[QueryResult]] = {}
    for r in results:
        panels.setdefault(r.panel, []).append(r)
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.6, rows * 2.7), squeeze=False)
    times = [float(t) for r in results for s in r.series for t, _ in s["values"]]
    t0, span = (min(times), max(times) - min(times)) if times else (0.0, 1.0)
    for ax, (name, queries) in zip(axes.flat, panels.items(), strict=False):
        drawn = 0
        for q in queries:
            for s in q.series[:8]:
                points = [(float(t) - t0, float(v)) for t, v in s["values"] if math.isfinite(float(v))]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, linewidth=1.2, label=q.label(s["metric"])[:28],
                            marker="o" if len(points) < 3 else None)  # a lone sample must still show
                    drawn += 1
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, max(span, 1.0))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=6, loc="best")
        else:
            quiet = any("ALERTS" in q.expr for q in queries)  # no alert pending or firing is good news
            ax.text(0.5, 0.5, "none pending or firing" if quiet else "no data", ha="center", va="center",
                    transform=ax.transAxes, color="green" if quiet else "red")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=12)
    fig.supxlabel("seconds", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def summary(results: list[QueryResult]) -> list[dict[str, Any]]:
    return [{"panel": r.panel, "ref": r.ref, "expr": r.expr, "unit": r.unit, "series": len(r.series),
             "points": r.finite_points(), "last": {k: round(v, 4) for k, v in r.last_values().items()}}
            for r in results]


def write_results(results: list[QueryResult], path: Path, scenario: str, command: str | None = None) -> None:
    """The values a run saw (every query's summary), with the run's date, commit, machine and command.

    bench/report.py generates docs/operations.md's dashboard table from such a file (bench/results/dashboard.json).
    """
    document = {"scenario": scenario, "provenance": provenance(command), "queries": summary(results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def native_scenario(seconds: float) -> str:
    third = seconds / 3
    return (f"Native stack (Valkey, inference at 640x360/15 fps with the default ladder, 2 edges behind nginx, "
            f"Prometheus scraping every 1 s); 4 viewers (auto tier, JPEG), then 2 pinned to `low` at {third:.0f} s "
            f"and 4 offering `h264,jpeg` at {2 * third:.0f} s; values at {seconds:.0f} s, all 10 still watching.")


def _native(seconds: float) -> tuple[list[QueryResult], dict[str, list[str]]]:
    from tests.support.timing import wait_until

    from tools.native_stack import NativeStack
    from tools.viewers import ViewerPool

    stack = NativeStack(edges=2, with_nginx=True, inference_args=["--width", "640", "--height", "360",
                                                                  "--fps", "15"])
    with stack:
        assert stack.nginx is not None and stack.prometheus is not None
        start = time.time()
        url = f"ws://127.0.0.1:{stack.nginx.port}/ws/demo"
        # viewers join in three waves (auto tier, then pinned low, then auto) so the picture shows changes
        with ViewerPool(url, 4):
            time.sleep(seconds / 3)  # traffic for the picture, not a readiness wait
            with ViewerPool(url, 2, tier="low"):
                time.sleep(seconds / 3)
                with ViewerPool(url, 4, codecs=("h264", "jpeg")):  # viewers that decode the video tiers
                    time.sleep(seconds / 3)
                    end = time.time()  # the last points: every viewer still watching
        prom = stack.prometheus
        wait_until("a scrape after the last point", lambda: max(  # the points at `end` are in Prometheus
            float(x["value"][1]) for x in prom.query('timestamp(up{job="edge"})')) >= end, 30)
        results = evaluate(stack.prometheus, start, end)
        variables = variable_values(stack.prometheus)
    return results, variables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", help="URL of a running Prometheus")
    parser.add_argument("--minutes", type=float, default=15.0, help="time range with --prometheus")
    parser.add_argument("--native", action="store_true", help="start the native stack and drive viewers")
    parser.add_argument("--seconds", type=float, default=60.0, help="traffic time with --native (max 600)")
    parser.add_argument("--out", type=Path, default=Path("tests/artifacts/dashboard.png"))
    parser.add_argument("--json", type=Path, help="also write every query's result summary here")
    parser.add_argument("--results", type=Path,
                        help="with --native: write the values seen, with provenance, here "
                             "(bench/results/dashboard.json)")
    args = parser.parse_args(argv)
    if args.native:
        seconds = min(args.seconds, 600.0)
        results, _ = _native(seconds)
        if args.results:
            command = shlex.join(["python", "-m", "tools.render_dashboard", *(sys.argv[1:] if argv is None else argv)])
            write_results(results, args.results, native_scenario(seconds), command)
    elif args.prometheus:
        from tools.native_stack import PrometheusAPI

        prom = PrometheusAPI(args.prometheus)
        end = time.time()
        results = evaluate(prom, end - args.minutes * 60, end, step=max(1.0, args.minutes * 60 / 300))
    else:
        parser.error("give --prometheus URL or --native")
    if args.results and not args.native:
        parser.error("--results needs --native (a run whose scenario is known)")
    plot(results, args.out)
    if args.json:
        args.json.write_text(json.dumps(summary(results), indent=1))
    # an empty ALERTS query is good news (nothing pending or firing), not a missing series
    empty = [f"{r.panel} [{r.ref}]" for r in results if r.finite_points() == 0 and "ALERTS" not in r.expr]
    print(f"wrote {args.out}: {len(results)} queries, {len(empty)} without data {empty}")
    return 1 if empty else 0


if __name__ == "__main__":
    raise SystemExit(main())
