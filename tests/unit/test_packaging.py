"""The install's contracts: one version source, and lock files that satisfy pyproject's requirements."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import framecast

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# lock file -> the extras it is compiled from (Makefile `lock`)
LOCKS = {"edge.txt": ("edge",), "inference.txt": ("inference", "video"), "dev.txt": ("all", "dev")}


def test_version_has_one_source() -> None:
    version = PYPROJECT["project"]["version"]
    assert framecast.__version__ == version
    env = dict(
        line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines() if line and not line.startswith("#")
    )
    assert env["FRAMECAST_VERSION"] == version, ".env's FRAMECAST_VERSION (image tags) must match pyproject"


def _pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _direct(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's requirements for these extras, self-references (framecast[...]) expanded."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    todo, seen, out = list(extras), set(), [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in optional[extra]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == "framecast":
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_file_pins_satisfy_pyproject(lock: str) -> None:
    pins = _pins(lock)
    stale = []
    for req in _direct(LOCKS[lock]):
        name = canonicalize_name(req.name)
        if name == "torch":
            assert name not in pins, "torch is installed on its own (Makefile), never from the lock"
            continue
        if name not in pins or not req.specifier.contains(pins[name], prereleases=True):
            stale.append(f"{req} (locked: {pins.get(name)})")
    assert not stale, f"requirements/{lock} is stale, run `make lock`: {stale}"
