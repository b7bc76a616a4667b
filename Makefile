# framecast: every install step lives here, so a fresh machine needs only python3 (3.11+), make and git.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch first, pinned, so pip takes the CPU build instead of a multi-GB CUDA wheel
TORCH  ?= torch==2.13.0

.PHONY: install run test test-fast lint bench soak clean browsers

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m framecast.launcher

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest tests/unit -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools scripts
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench.run --update-docs

soak: $(STAMP)
	FRAMECAST_SOAK_SECONDS=600 $(PY) -m pytest tests/reliability -m slow -q

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache tests/artifacts src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
