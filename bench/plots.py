"""PNG plots of the suites' JSON results (matplotlib, Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.constants import ALL_SYSTEMS

STATUS_OK = "ok"
FIGSIZE_WIDE = (11.0, 4.5)
DPI = 110
BAR_GROUP_WIDTH = 0.8
SERIES_MARKER_SIZE = 3.0

PLOT_FPS_LATENCY = "links_fps_latency.png"
PLOT_STEP = "step_latency_over_time.png"
PLOT_FANOUT = "fanout_cpu_per_delivery.png"


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == STATUS_OK]


def _grouped_bars(
    ax: Any, rows: list[dict[str, Any]], scenarios: Sequence[str], systems: Sequence[str], key: str
) -> None:
    width = BAR_GROUP_WIDTH / max(len(systems), 1)
    for index, system in enumerate(systems):
        values = []
        for scenario in scenarios:
            match = [r for r in rows if r["scenario"] == scenario and r["system"] == system]
            value = match[0].get(key) if match else None
            values.append(value if value is not None else 0.0)
        positions = [i + (index - (len(systems) - 1) / 2) * width for i in range(len(scenarios))]
        ax.bar(positions, values, width, label=system)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels(scenarios, rotation=15)


def plot_links(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """FPS and p50/p95 latency per scenario and system; step latency over time."""
    ok = _ok(rows)
    if not ok:
        return []
    scenarios = list(dict.fromkeys(r["scenario"] for r in ok))
    systems = [s for s in ALL_SYSTEMS if any(r["system"] == s for r in ok)]
    fig, axes = plt.subplots(1, 3, figsize=(FIGSIZE_WIDE[0] * 1.4, FIGSIZE_WIDE[1]))
    for ax, key, title in zip(
        axes,
        ("fps", "latency_p50_ms", "latency_p95_ms"),
        ("delivered FPS", "latency p50 (ms, log)", "latency p95 (ms, log)"),
        strict=True,
    ):
        _grouped_bars(ax, ok, scenarios, systems, key)
        ax.set_title(title)
        if key != "fps":
            ax.set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    paths = [out_dir / PLOT_FPS_LATENCY]
    fig.savefig(paths[0], dpi=DPI)
    plt.close(fig)
    step_rows = [r for r in ok if r.get("step")]
    if step_rows:
        paths.append(_plot_step(step_rows, out_dir / PLOT_STEP))
    return paths


def _plot_step(rows: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=FIGSIZE_WIDE)
    for row in rows:
        series = row["latency_series"]
        ax.plot(
            [t for t, _ in series],
            [lat for _, lat in series],
            ".",
            markersize=SERIES_MARKER_SIZE,
            label=row["system"],
        )
    step = rows[0]["step"]
    ax.axvline(
        step["step_at_s"],
        color="black",
        linestyle="--",
        label=f"{step['rate_before_mbit']:g} -> {step['rate_after_mbit']:g} Mbit/s",
    )
    ax.set_yscale("log")
    ax.set_xlabel("seconds since client start")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title(f"{rows[0]['scenario']}: latency per frame")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_fanout(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Per frame size: CPU us per delivery and the slowest viewer's fps against viewers, one line per server."""
    ok = [r for r in _ok(rows) if r.get("cpu_us_per_delivery")]
    if not ok:
        return []
    sizes = sorted({r["payload_bytes"] for r in ok}, reverse=True)
    fig, axes = plt.subplots(2, len(sizes), figsize=(FIGSIZE_WIDE[0] * max(1, len(sizes)) * 0.7, FIGSIZE_WIDE[1] * 1.5),
                             squeeze=False)
    for col, size in enumerate(sizes):
        for target in dict.fromkeys(r["target"] for r in ok):
            for workers in sorted({r["workers"] for r in ok if r["target"] == target}):
                mine = sorted((r["viewers"], r["cpu_us_per_delivery"], r["fps_min"]) for r in ok
                              if r["target"] == target and r["payload_bytes"] == size and r["workers"] == workers)
                if not mine:
                    continue
                label = target if workers == 1 else f"{target}, {workers} workers"
                axes[0][col].plot([p[0] for p in mine], [p[1] for p in mine], "o-", label=label)
                axes[1][col].plot([p[0] for p in mine], [p[2] for p in mine], "o-", label=label)
        axes[0][col].set_title(f"{size / 1e3:g} KB frames, N viewers x 30 fps")
        axes[0][col].set_ylabel("server CPU us per delivery")
        axes[1][col].set_ylabel("fps of the slowest viewer")
        for ax in axes[:, col]:
            ax.set_xscale("log")
            ax.set_xlabel("viewers")
        axes[0][col].legend(fontsize="small")
    fig.tight_layout()
    path = out_dir / PLOT_FANOUT
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return [path]


PLOT_VIDEO = "video_vs_jpeg.png"


def plot_video(rows: list[dict[str, Any]], scenario: str, out_dir: Path) -> list[Path]:
    """Per viewer of the video suite: FPS, latency p50/p95 and KB per frame, side by side."""
    ok = [r for r in _ok(rows) if r.get("frames")]
    if not ok:
        return []
    labels = [r["viewer"] for r in ok]
    colours = ["tab:blue" if "h264" in r["codecs"] else "tab:orange" for r in ok]
    fig, axes = plt.subplots(1, 3, figsize=(FIGSIZE_WIDE[0] * 1.4, FIGSIZE_WIDE[1]))
    axes[0].bar(labels, [r["fps"] for r in ok], color=colours)
    axes[0].set_title("delivered FPS")
    width = BAR_GROUP_WIDTH / 2
    positions = range(len(ok))
    axes[1].bar([p - width / 2 for p in positions], [r["latency_p50_ms"] for r in ok], width, label="p50",
                color=colours)
    axes[1].bar([p + width / 2 for p in positions], [r["latency_p95_ms"] for r in ok], width, label="p95",
                color=colours, alpha=0.5)
    axes[1].set_title("latency, capture to viewer (ms): p50 solid, p95 light")
    axes[2].bar(labels, [r["bytes_per_frame"] / 1e3 for r in ok], color=colours)
    axes[2].set_title("KB per frame")
    for ax in axes:
        ax.set_xticks(list(positions))
        ax.set_xticklabels(labels, rotation=20, ha="right")
    fig.suptitle(f"H.264 (blue) and JPEG (orange) tiers through the real stack, {scenario}")
    fig.tight_layout()
    path = out_dir / PLOT_VIDEO
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return [path]
