#!/usr/bin/env bash
# pyproject's lower bounds must be true: resolve the lowest direct versions (uv, --resolution lowest-direct),
# install them into a scratch venv, then run tests/unit there. torch is outside the lock (requirements/
# exclude.txt): the scratch venv takes the Makefile's TORCH_VERSION. Used by CI (.ci/run); runs locally too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$PY" -m uv pip compile pyproject.toml --resolution lowest-direct --python-version 3.11 \
    --excludes requirements/exclude.txt --extra all --extra dev --quiet -o "$scratch/requirements.txt"
python3 -m venv "$scratch/venv"
"$PY" -m uv pip install --quiet --python "$scratch/venv/bin/python" -r "$scratch/requirements.txt"
"$scratch/venv/bin/python" -m pip install --quiet "torch==$(sed -n 's/^TORCH_VERSION *?= *//p' Makefile)"
# the package from a copy, so the build leaves nothing (build/, *.egg-info) in this tree
mkdir "$scratch/pkg" && cp -r pyproject.toml README.md src "$scratch/pkg/"
"$scratch/venv/bin/python" -m pip install --quiet --no-deps "$scratch/pkg"
grep -E '^(pytest|pytest-asyncio|websockets|numpy|pydantic|fastapi|redis)==' "$scratch/requirements.txt" | tr '\n' ' '
echo
"$scratch/venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit "$@"
