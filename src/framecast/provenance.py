"""Where a figure comes from: the date, the commit and the machine of a run, recorded in every results JSON.

Used by the benchmarks (bench/, including `bench.inference`) and the reliability tests' records. docs
tables are generated from committed results (bench/report.py) and print this beside them: a figure in the
docs names its date, commit and command. One home for the machine description too.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from framecast.edge import hotpath

# the checkout this module lives in (an editable install), else the working directory
ROOT = next((p for p in Path(__file__).resolve().parents if (p / ".git").exists()), Path.cwd())


def machine_info() -> dict[str, Any]:
    """The machine the numbers come from."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": "none",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(root: Path = ROOT) -> str | None:
    """HEAD's hash, with "+local" when tracked files differ from it (the run measured uncommitted code)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+local" if dirty else "")


def provenance(command: str | None = None, *, edge: bool = True) -> dict[str, Any]:
    """date (UTC, ISO 8601), commit, machine and command of a run that is about to write results; with `edge`,
    also whether the edges it starts run the compiled hot path."""
    prov: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(),
        "machine": machine_info(),
        "command": command or shlex.join([Path(sys.executable).name, *sys.argv]),
    }
    if edge:
        prov["edge_hot_path"] = hotpath.describe(hint=False)  # the edges a benchmark starts run this build
    return prov


def describe(prov: dict[str, Any]) -> str:
    """One line for the docs: `2026-12-01 09:36 UTC, commit 7b69ead, `make bench`, 2 CPUs (AMD EPYC), ...`."""
    m = prov["machine"]
    commit = prov.get("commit")
    date = prov["date"].replace("T", " ").removesuffix("Z")[:16] + " UTC"
    if commit:
        where = f"commit {commit[:7]}" + (" with local changes" if commit.endswith("+local") else "")
    else:  # results from before provenance was recorded: say what is known
        where = f"commit not recorded (results committed in {prov['committed_in'][:7]})"
        if "date of the commit" in prov.get("note", ""):
            date = f"committed {date}"
    hot = f"; edge hot path {prov['edge_hot_path']}" if prov.get("edge_hot_path") else ""
    return (f"{date}, {where}, `{prov['command']}`; {m['cpus']} CPUs ({m['cpu_model']}), GPU: {m['gpu']}, "
            f"{m['platform']}, Python {m['python']}{hot}")
