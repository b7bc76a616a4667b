"""Docs tables and the committed results they are generated from agree; every results JSON says where it is from.

A table edited by hand, or a JSON regenerated without `--update-docs`, fails here: rerun the generator
(`python -m bench.report`, or the run that wrote the JSON) instead of editing numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from bench.report import DEFAULT_DOC, DEFAULT_RESULTS, update_doc

from framecast.inference.benchmark import BEGIN, END, markdown

ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted(DEFAULT_RESULTS.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_there_are_committed_results() -> None:
    assert {p.stem for p in RESULTS} >= {"links", "fanout", "video", "inference"}


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_every_results_json_records_date_commit_machine_and_command(path: Path) -> None:
    prov = _load(path)["provenance"]
    assert prov["date"][:2] == "20" and prov["date"].endswith("Z"), prov["date"]
    assert prov["command"]
    assert prov["commit"] or prov.get("committed_in"), "a commit, or (older runs) the commit that added them"
    assert {"cpus", "cpu_model", "platform", "python", "gpu"} <= prov["machine"].keys()


def test_benchmarks_md_tables_are_generated_from_the_committed_json(tmp_path: Path) -> None:
    regenerated = tmp_path / "benchmarks.md"
    shutil.copy(DEFAULT_DOC, regenerated)
    update_doc(DEFAULT_RESULTS, regenerated)
    assert regenerated.read_text() == DEFAULT_DOC.read_text(), \
        "docs/benchmarks.md disagrees with bench/results/*.json: run python -m bench.report"


def test_inference_md_section_is_generated_from_the_committed_json() -> None:
    doc = (ROOT / "docs" / "inference.md").read_text()
    section = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    assert section == markdown(_load(DEFAULT_RESULTS / "inference.json")), \
        "docs/inference.md's measured section disagrees with bench/results/inference.json"
