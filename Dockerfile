# One image for every Nertz service; the compose file picks the module to run.
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
# dependencies first (cached layer), from the one lockfile
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/pyproject.toml
COPY apps/cli/pyproject.toml apps/cli/pyproject.toml
COPY services/market-ingest/pyproject.toml services/market-ingest/pyproject.toml
COPY services/signal/pyproject.toml services/signal/pyproject.toml
COPY services/llm-validator/pyproject.toml services/llm-validator/pyproject.toml
COPY services/executor/pyproject.toml services/executor/pyproject.toml
COPY services/api/pyproject.toml services/api/pyproject.toml
COPY services/notifier/pyproject.toml services/notifier/pyproject.toml
RUN uv sync --frozen --no-dev --no-install-workspace
# then the code and the bundled data
COPY libs libs
COPY services services
COPY apps apps
COPY data data
RUN uv sync --frozen --no-dev
ENV PATH=/app/.venv/bin:$PATH
RUN useradd --system --uid 10001 nertz
USER nertz
# default: print the CLI's help; compose sets the command per service
CMD ["nertz", "--help"]
