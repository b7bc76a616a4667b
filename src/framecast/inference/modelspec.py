"""What a `--model` value names, checked without importing torch (so a typo fails in well under a second)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

TORCHSCRIPT_SUFFIXES: Final = (".pt", ".pth", ".ts", ".torchscript")
EXPORT_SUFFIXES: Final = (".pt2",)


def model_kind(spec: str) -> str:
    """builtin, export (torch.export file), torchscript (file), factory (package.module:callable) or unknown."""
    if spec == "builtin":
        return "builtin"
    if spec.endswith(EXPORT_SUFFIXES):
        return "export"
    if spec.endswith(TORCHSCRIPT_SUFFIXES) or "/" in spec:
        return "torchscript"
    if ":" in spec:
        return "factory"
    return "unknown"


def preflight(spec: str) -> str | None:
    """A one-line reason the model cannot load, found without torch; None when it may load."""
    kind = model_kind(spec)
    if kind in ("export", "torchscript") and not Path(spec).is_file():
        return f"model {spec}: {'torch.export' if kind == 'export' else 'TorchScript'} file not found"
    if kind == "factory":
        module = spec.partition(":")[0]
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            return f"model {spec}: cannot import {module} ({type(exc).__name__}: {exc})"
        if found is None:
            return f"model {spec}: cannot import {module} (no such module on sys.path)"
    if kind == "unknown":
        return f"model {spec!r}: expected builtin, package.module:factory or a TorchScript .pt file"
    return None
