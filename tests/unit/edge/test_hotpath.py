"""The compiled hot path's bookkeeping: which modules run compiled, and refusing sources edited after a build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framecast.edge import hotpath


def _fake_build(folder: Path, source: str) -> tuple[Path, dict[str, str]]:
    """pacing.py and a compiled pacing module beside it, and a manifest recording `source`'s digest."""
    py = folder / "pacing.py"
    py.write_text(source)
    so = folder / "pacing.cpython-311-x86_64-linux-gnu.so"
    so.write_bytes(b"\x7fELF")
    manifest = folder / "compiled-sources.json"
    manifest.write_text(json.dumps({"framecast.edge.pacing": hotpath.source_digest(py)}))
    return manifest, {"framecast.edge.pacing": str(so)}


def test_an_unchanged_source_is_not_stale(tmp_path: Path) -> None:
    manifest, origins = _fake_build(tmp_path, "x = 1\n")
    assert hotpath.stale(manifest, origins) == []
    hotpath.check(manifest, origins)


def test_a_source_edited_after_the_build_stops_start_up_naming_it(tmp_path: Path) -> None:
    manifest, origins = _fake_build(tmp_path, "x = 1\n")
    (tmp_path / "pacing.py").write_text("x = 2\n")
    assert hotpath.stale(manifest, origins) == ["framecast.edge.pacing"]
    with pytest.raises(SystemExit, match=r"framecast\.edge\.pacing.*make compile"):
        hotpath.check(manifest, origins)


def test_no_manifest_or_a_module_running_from_source_is_never_stale(tmp_path: Path) -> None:
    manifest, origins = _fake_build(tmp_path, "x = 1\n")
    (tmp_path / "pacing.py").write_text("x = 2\n")
    assert hotpath.stale(tmp_path / "absent.json", origins) == []  # an installed wheel: nothing to compare
    assert hotpath.stale(manifest, {"framecast.edge.pacing": str(tmp_path / "pacing.py")}) == []


def test_describe_matches_what_the_import_system_finds() -> None:
    compiled = hotpath.compiled()
    text = hotpath.describe()
    if not compiled:
        assert text.startswith("pure Python")
    elif len(compiled) == len(hotpath.HOT_MODULES):
        assert text.startswith("compiled")
    else:
        assert text.startswith("partly compiled")
    assert set(compiled) <= set(hotpath.HOT_MODULES)
    assert [Path(s).exists() for s in hotpath.HOT_SOURCES] == [True] * len(hotpath.HOT_SOURCES)
