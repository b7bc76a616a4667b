# framecast: every install step lives here, so a fresh machine needs only python3 (3.11+), make and git.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is installed on its own, before the lock (requirements/ holds no torch): the build is chosen on
# purpose. Where `nvidia-smi` works, PyPI's default Linux wheel (the CUDA build); elsewhere PyTorch's CPU
# wheel index, so a laptop never fetches multi-GB CUDA wheels. Override with one variable, e.g.
# `make install TORCH_INDEX=https://download.pytorch.org/whl/cu126`, or `TORCH_INDEX=` for PyPI's default.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?= $(shell nvidia-smi >/dev/null 2>&1 || echo https://download.pytorch.org/whl/cpu)
# `make lock` keeps the pinned versions; `make lock UPGRADE=1` moves every pin to the newest release
LOCK := $(PY) -m uv pip compile pyproject.toml --universal --python-version 3.11 --excludes requirements/exclude.txt \
        --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) --quiet

.PHONY: install lock run test test-fast lint bench soak clean browsers compile uncompile test-compiled

$(STAMP): pyproject.toml requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# no -q: this download is the long one. An unreachable index (a firewalled machine) fails fast and
	@# falls back to pip's configured index (here a local wheel folder holding the +cpu build).
	if [ -n "$(TORCH_INDEX)" ]; then \
	    $(PY) -m pip install --timeout 10 --retries 1 --index-url "$(TORCH_INDEX)" "torch==$(TORCH_VERSION)" || { \
	    echo "make install: $(TORCH_INDEX) unreachable; installing torch==$(TORCH_VERSION) from pip's default index" >&2; \
	    $(PY) -m pip install "torch==$(TORCH_VERSION)"; }; \
	else $(PY) -m pip install "torch==$(TORCH_VERSION)"; fi
	$(PY) -m pip install -q -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# refresh the lock files from pyproject's extras (edge and inference images, dev = `make install` + tests)
lock:
	test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv
	$(LOCK) --extra edge -o requirements/edge.txt
	$(LOCK) --extra inference --extra video -o requirements/inference.txt
	$(LOCK) --extra all --extra dev -o requirements/dev.txt

run: $(STAMP)
	$(PY) -m framecast.dev.launcher

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest tests/unit -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench tools scripts setup.py
	$(VENV)/bin/mypy

# the edge's hot path compiled in place with mypyc (src/framecast/edge/hotpath.py; the edge image always
# compiles it); `make uncompile` goes back to the sources. A source edited after `make compile` stops the
# edge and the tests with a message until one of the two is run again.
HOT_SO = src/*__mypyc.*.so src/framecast/edge/*.so
compile: $(STAMP)
	FRAMECAST_COMPILE=1 $(PY) setup.py -q build_ext --inplace
	$(PY) -c "from pathlib import Path; from framecast.edge import hotpath; hotpath.write_manifest(Path('.')); print('make compile:', hotpath.describe())"

uncompile:
	rm -f $(HOT_SO) src/framecast/edge/compiled-sources.json

# the edge's suites again, on the compiled hot path (CI runs `make test` on the sources, then this)
test-compiled: compile
	$(PY) -m pytest tests/unit/edge tests/integration/edge tests/security tests/reliability/test_hostile.py \
	    tests/reliability/test_viewer_faults.py tests/e2e/test_viewer_video.py -q

# the benchmarks measure the edge as the image runs it: compiled
bench: $(STAMP) compile
	$(PY) -m bench.run --update-docs

soak: $(STAMP)
	FRAMECAST_SOAK_SECONDS=600 $(PY) -m pytest tests/reliability -m slow -q

# the README's compose commands on a real Docker engine (a private dockerd, stand-in base
# images, offline builds); needs root. See docs/operations.md#testing-the-compose-stack
.PHONY: compose-test
compose-test: $(STAMP)
	scripts/compose_test.sh

clean:
	rm -rf $(VENV) build dist $(HOT_SO) src/framecast/edge/compiled-sources.json .pytest_cache .mypy_cache .ruff_cache tests/artifacts src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
