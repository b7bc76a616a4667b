"""The README promises two commands and a configuration table that matches the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_two_commands_come_first() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_ci_calls_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_config_table_is_generated_from_the_settings() -> None:
    table = subprocess.run([sys.executable, str(REPO / "scripts" / "config_table.py")], capture_output=True,
                           text=True, check=True).stdout.strip()
    begin, end = "<!-- config-table:begin -->", "<!-- config-table:end -->"
    current = README.split(begin, 1)[1].split(end, 1)[0].strip()
    assert current == table, "README configuration table is stale: run python scripts/config_table.py --write"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_linked_docs_exist() -> None:
    for link in re.findall(r"\]\((docs/[^)]+)\)", README):
        path, _, anchor = link.partition("#")
        assert (REPO / path).exists(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (REPO / path).read_text(), re.M)
            assert anchor in {_slug(h) for h in headings}, link
