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
from bench.inference import BEGIN, END, markdown
from bench.report import (
    DASHBOARD_RESULTS,
    DEFAULT_DOC,
    DEFAULT_RESULTS,
    OPERATIONS_DOC,
    RELIABILITY_DOC,
    RELIABILITY_RESULTS,
    RELIABILITY_SECTIONS,
    reliability_records,
    reliability_table,
    update_doc,
    update_operations_doc,
    update_reliability_doc,
)
from tools.render_dashboard import dashboard_panels

from tests.reliability import support

ROOT = Path(__file__).resolve().parents[2]
# the benchmarks' results and the reliability tests' records (bench/results/tmp/ holds uncommitted runs)
RESULTS = sorted([*DEFAULT_RESULTS.glob("*.json"), *(DEFAULT_RESULTS / RELIABILITY_RESULTS).glob("*.json")])


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_there_are_committed_results() -> None:
    assert {p.stem for p in RESULTS} >= {"links", "fanout", "video", "inference", "dashboard",
                                         "sentinel_failover", "cluster_master_failover", "soak_100_viewers_60s"}


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


@pytest.mark.parametrize(("doc", "update"), [(RELIABILITY_DOC, update_reliability_doc),
                                             (OPERATIONS_DOC, update_operations_doc)],
                         ids=["reliability.md", "operations.md"])
def test_reliability_and_dashboard_tables_are_generated_from_the_committed_json(
        tmp_path: Path, doc: Path, update: Any) -> None:
    regenerated = tmp_path / doc.name
    shutil.copy(doc, regenerated)
    update(DEFAULT_RESULTS, regenerated)
    assert regenerated.read_text() == doc.read_text(), \
        f"docs/{doc.name} disagrees with its results in bench/results: run python -m bench.report"


def test_reliability_records_each_render_as_one_row() -> None:
    records = reliability_records(DEFAULT_RESULTS)
    assert records
    rendered = "\n".join(reliability_table(records, s) for s in RELIABILITY_SECTIONS)
    for r in records:  # a record is found by the test that measured it
        node = r["provenance"]["command"].removeprefix("pytest ").removeprefix("tests/reliability/")
        assert f"`{node}`" in rendered, r["test"]


def test_dashboard_results_cover_every_panel_of_the_dashboard() -> None:
    """A panel added or renamed since the run fails here: rerun tools.render_dashboard --native --results."""
    queries = _load(DEFAULT_RESULTS / DASHBOARD_RESULTS)["queries"]
    assert [(q["panel"], q["ref"]) for q in queries] == \
        [(p["title"], t["refId"]) for p in dashboard_panels() for t in p["targets"]]


def test_a_record_reaches_the_committed_results_only_when_its_test_passed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(support, "ARTIFACT", tmp_path / "artifacts" / "reliability.json")
    monkeypatch.setattr(support, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setenv(support.RECORD_RESULTS_ENV, "1")
    for node, passed in (("t.py::failing", False), ("t.py::passing", True)):
        monkeypatch.setenv("PYTEST_CURRENT_TEST", f"{node} (call)")
        support.record(node.split("::")[1], seconds=1.5)
        support.write_results(node, passed)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["passing.json"]
    document = _load(tmp_path / "results" / "passing.json")
    assert document["figures"] == {"seconds": 1.5} and document["provenance"]["command"] == "pytest t.py::passing"
    assert set(_load(support.ARTIFACT)) == {"failing", "passing"}  # the artifact keeps every run's figures
