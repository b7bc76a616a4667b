# framecast inference: source -> torch model -> JPEG tiers -> Redis.
# CPU by default; a CUDA build of PyTorch with --build-arg
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (docker-compose.gpu.yml
# does that). The PyTorch wheels bundle the CUDA runtime, so the same slim base
# works for both; the host provides the driver.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
# torch's source: a PyTorch wheel index by full URL (CPU builds; a CUDA variant; a mirror),
# or, with PIP_NO_INDEX=1, the torch wheel in docker/wheels/
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Where pip finds the rest (build args, seen by pip as environment): the index (PyPI, or a
# mirror), plus any wheels in docker/wheels/; PIP_NO_INDEX=1 takes docker/wheels/ only
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_NO_INDEX=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PIP_FIND_LINKS=/wheels
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/wheels/ /wheels/
# torch first (with its own dependencies), from the index of the wanted variant
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
# the locked versions (`make lock`; torch is outside the lock), in a layer of their own
COPY requirements/inference.txt ./requirements/
RUN pip install --no-deps -r requirements/inference.txt
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN pip install --no-deps ".[inference,video]" && pip uninstall -y pip

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 framecast \
 && useradd --system --uid 10001 --gid framecast --no-create-home --shell /usr/sbin/nologin framecast
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FRAMECAST_METRICS_HOST=0.0.0.0 \
    FRAMECAST_METRICS_PORT=9101
USER 10001:10001
EXPOSE 9101
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9101/metrics', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "framecast.inference"]
