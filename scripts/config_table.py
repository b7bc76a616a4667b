"""Print (or check) the README's configuration table, generated from the settings classes.

    python scripts/config_table.py          # print the table
    python scripts/config_table.py --write  # rewrite it in README.md between the markers
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from pydantic_settings import BaseSettings

from framecast.settings import CommonSettings, env_name, flag_name

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"
SERVICES = [("all services", "framecast.settings", "CommonSettings"),
            ("inference", "framecast.inference.settings", "InferenceSettings"),
            ("edge", "framecast.edge.settings", "EdgeSettings")]


def _cls(module: str, name: str) -> type[BaseSettings]:
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def table() -> str:
    rows = ["| service | environment variable | flag | default | meaning |", "|---|---|---|---|---|"]
    common = set(CommonSettings.model_fields)
    for service, module, name in SERVICES:
        cls = _cls(module, name)
        for field, info in cls.model_fields.items():
            if service != "all services" and field in common:
                continue
            default = "" if info.default is None else repr(info.default)
            desc = (info.description or "").replace("|", "\\|")
            rows.append(f"| {service} | `{env_name(field)}` | `{flag_name(field)}` | `{default}` | {desc} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    text = table()
    if not args.write:
        print(text)
        return 0
    readme = README.read_text()
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
