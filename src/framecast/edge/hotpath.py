"""The edge's hot path, and whether it runs compiled.

The modules below run per frame and per ack for every viewer. Built with
`FRAMECAST_COMPILE=1` (the edge image does; natively `make compile`), mypyc
compiles them to C extension modules from these very sources: same code, same
behaviour, about 30 % less edge CPU per delivered frame (docs/benchmarks.md).
Without it they run as plain Python.

An in-place build (`make compile`) writes `COMPILED_MANIFEST` next to this
file: the SHA-256 of each source it compiled. Python imports a compiled module
before its `.py`, so a source edited after that build would be silently
ignored; `stale()` names such modules and the edge and the test suite refuse
to start on them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

HOT_MODULES = (
    "framecast.edge.busframe",
    "framecast.edge.pacing",
    "framecast.edge.viewer",
    "framecast.edge.session",
    "framecast.edge.wsconn",
    "framecast.edge.metrics",
)
# the same modules as paths from the project root (what setup.py hands to mypyc)
HOT_SOURCES = tuple("src/" + name.replace(".", "/") + ".py" for name in HOT_MODULES)
COMPILED_MANIFEST = Path(__file__).with_name("compiled-sources.json")
_EXTENSION_SUFFIXES = (".so", ".pyd")


def _origin(module: str) -> str:
    spec = importlib.util.find_spec(module)
    return spec.origin if spec is not None and spec.origin is not None else ""


def compiled() -> tuple[str, ...]:
    """The hot modules that import as compiled extension modules (found, not imported)."""
    return tuple(m for m in HOT_MODULES if _origin(m).endswith(_EXTENSION_SUFFIXES))


def describe(*, hint: bool = True) -> str:
    """Which build the hot path runs; `hint`: say how to compile it when it is not."""
    done = compiled()
    if not done:
        return "pure Python" + (" (build with FRAMECAST_COMPILE=1 or `make compile` for the compiled hot path)"
                                if hint else "")
    if len(done) == len(HOT_MODULES):
        return f"compiled (mypyc, {len(done)} modules)"
    missing = sorted(set(HOT_MODULES) - set(done))
    return f"partly compiled (mypyc; pure Python: {', '.join(missing)})"


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(root: Path) -> Path:
    """Record the sources an in-place build compiled (`make compile` calls this after mypyc)."""
    digests = {m: source_digest(root / src) for m, src in zip(HOT_MODULES, HOT_SOURCES, strict=True)}
    COMPILED_MANIFEST.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    return COMPILED_MANIFEST


def stale(manifest: Path = COMPILED_MANIFEST, origins: dict[str, str] | None = None) -> list[str]:
    """Hot modules of an in-place build whose source changed since it was compiled (empty: none, or no
    in-place build: an installed wheel carries no manifest and cannot go stale).

    `origins` (module -> the file it imports from) defaults to what the import system finds.
    """
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return []
    if origins is None:
        origins = {m: _origin(m) for m in compiled()}
    out = []
    for module, origin in origins.items():
        if not origin.endswith(_EXTENSION_SUFFIXES):
            continue
        source = Path(origin).parent / (module.rsplit(".", 1)[1] + ".py")
        if source.exists() and recorded.get(module) != source_digest(source):
            out.append(module)
    return out


def check(manifest: Path = COMPILED_MANIFEST, origins: dict[str, str] | None = None) -> str:
    """`describe()`, or SystemExit naming the stale modules and the fix."""
    changed = stale(manifest, origins)
    if changed:
        raise SystemExit(f"framecast: the compiled edge modules {', '.join(changed)} are older than their sources "
                         "(edited after `make compile`); run `make compile` again, or `make uncompile` to run "
                         "the sources")
    return describe()
