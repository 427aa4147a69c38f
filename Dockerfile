# syntax=docker/dockerfile:1.7
# Finetune Studio images.
#   docker build --target train -t finetune-studio:train .      # CUDA training + studio (GPU)
#   docker build --target inference -t finetune-studio:api .    # slim CPU inference / API
# The CUDA runtime ships inside the locked torch wheels (nvidia-* packages); the host needs only
# the NVIDIA driver and the NVIDIA container toolkit.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_VERSION=0.9.5

FROM ${PYTHON_IMAGE} AS uv-base
ARG UV_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PYTHONUNBUFFERED=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app

# Dependencies first (cached layer), exactly as locked, without dev tools.
FROM uv-base AS train-deps
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# Training image: full locked environment (torch CUDA build), the code and the embedded model.
FROM uv-base AS train
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    FINETUNE_PATHS__MODEL_CACHE=/app/.cache/models \
    FINETUNE_PATHS__RUNS_DIR=/app/runs \
    FINETUNE_STUDIO__HOST=0.0.0.0 \
    FINETUNE_SERVE__HOST=0.0.0.0 \
    PATH="/app/.venv/bin:${PATH}"
COPY --from=train-deps /app/.venv /app/.venv
COPY pyproject.toml uv.lock README.md ./
COPY core ./core
COPY studio ./studio
COPY assets ./assets
COPY examples ./examples
RUN uv sync --frozen --no-dev && python -m core.infrastructure.models.provision
RUN useradd --create-home --uid 1000 studio && chown -R studio:studio /app
USER 1000
EXPOSE 7860 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"]
CMD ["finetune-studio", "studio"]

# Slim inference image: CPU torch from the PyTorch CPU index, no dev or training-only tools.
FROM uv-base AS inference
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV FINETUNE_PATHS__MODEL_CACHE=/app/.cache/models \
    FINETUNE_PATHS__RUNS_DIR=/app/runs \
    FINETUNE_SERVE__HOST=0.0.0.0 \
    PATH="/app/.venv/bin:${PATH}"
COPY pyproject.toml uv.lock README.md ./
RUN uv venv /app/.venv \
    && uv export --frozen --no-dev --no-hashes --no-emit-project -o /tmp/requirements.txt \
    && grep -v -E '^(torch|triton|nvidia-|bitsandbytes|wandb|tensorboard)' /tmp/requirements.txt > /tmp/requirements-inference.txt \
    && uv pip install --python /app/.venv/bin/python --index-url https://download.pytorch.org/whl/cpu "torch==$(grep -E '^torch==' /tmp/requirements.txt | cut -d= -f3 | cut -d' ' -f1)" \
    && uv pip install --python /app/.venv/bin/python -r /tmp/requirements-inference.txt
COPY core ./core
COPY studio ./studio
COPY examples ./examples
RUN uv pip install --python /app/.venv/bin/python --no-deps . && python -m core.infrastructure.models.provision
RUN useradd --create-home --uid 1000 studio && chown -R studio:studio /app
USER 1000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["finetune-studio", "serve"]
