# framecast edge: FastAPI/uvicorn fan-out. Installs `.[edge]` only: no torch,
# no OpenCV, no numpy (tests/deploy checks that the edge never imports them).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Where pip finds packages (build args, seen by pip as environment): the index (PyPI, or a
# mirror), plus any wheels in docker/wheels/; PIP_NO_INDEX=1 takes docker/wheels/ only
# (offline builds: CI, hosts without PyPI)
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_NO_INDEX=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PIP_FIND_LINKS=/wheels
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/wheels/ /wheels/
WORKDIR /src
# the locked versions (`make lock`), in a layer of their own: a code change reinstalls only framecast
COPY requirements/edge.txt ./requirements/
RUN pip install --no-deps -r requirements/edge.txt
# The hot path compiled with mypyc (FRAMECAST_COMPILE=1, the default; src/framecast/edge/hotpath.py):
# a C compiler (apt, unless the base image has one), and mypy with the edge's dependencies in a build
# venv of its own, so that the runtime stage gets the compiled modules and nothing of the toolchain.
# FRAMECAST_COMPILE=0 builds the pure-Python edge (same behaviour, more CPU per frame).
ARG FRAMECAST_COMPILE=1
ARG MYPY_VERSION=2.4.1
RUN if [ "$FRAMECAST_COMPILE" = 1 ]; then \
      { command -v gcc >/dev/null || { apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; }; } \
      && python -m venv /opt/build && /opt/build/bin/pip install --no-deps -r requirements/edge.txt \
      && /opt/build/bin/pip install "mypy==$MYPY_VERSION" "setuptools>=68"; \
    fi
COPY pyproject.toml setup.py README.md ./
COPY src ./src
# a regular (non-editable) install: the runtime stage needs only /opt/venv
RUN if [ "$FRAMECAST_COMPILE" = 1 ]; then \
      FRAMECAST_COMPILE=1 /opt/build/bin/pip wheel -q --no-build-isolation --no-deps -w /tmp/dist . \
      && pip install --no-deps /tmp/dist/framecast-*.whl; \
    else pip install --no-deps ".[edge]"; fi \
 && python -c "from framecast.edge import hotpath; print('framecast edge hot path:', hotpath.describe())" \
 && pip uninstall -y pip

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 framecast \
 && useradd --system --uid 10001 --gid framecast --no-create-home --shell /usr/sbin/nologin framecast
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FRAMECAST_HOST=0.0.0.0 \
    FRAMECAST_PORT=8000 \
    FRAMECAST_WORKERS=0
USER 10001:10001
EXPOSE 8000
# liveness only (/healthz never depends on Redis); readiness is /readyz
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "framecast.edge"]
