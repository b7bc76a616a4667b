"""The layout's rules (docs/architecture.md): PyAV only in codecs/, the edge without PyAV or torch, src/ on its own."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "framecast"


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_pyav_is_imported_in_codecs_only_and_src_never_imports_bench_or_tests() -> None:
    av_users, outside = [], []
    for path in sorted(SRC.rglob("*.py")):
        names = _imports(path)
        rel = path.relative_to(SRC).as_posix()
        if any(n == "av" or n.startswith("av.") for n in names) and not rel.startswith("codecs/"):
            av_users.append(rel)
        if any(n.split(".")[0] in ("bench", "tests") for n in names):
            outside.append(rel)
    assert av_users == [] and outside == []


def test_the_edge_loads_without_pyav_torch_or_the_video_codecs() -> None:
    code = ("import json, sys; import framecast.edge.app, framecast.edge.__main__; "
            "print(json.dumps(sorted(m for m in sys.modules if m in ('av', 'torch', 'cv2') "
            "or m.startswith('framecast.codecs.h264_') or m.startswith('framecast.inference'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
