# One image for the Prefect server, the worker that runs the flows, and the analyst app
# (docker-compose.yml). The base image is pinned by digest and every package by hash
# (requirements.lock, installed by uv with --require-hashes; uv itself from requirements-uv.lock).
# The code belongs to root and is read-only for the runtime user, who can write only the
# volumes compose mounts and dbt's scratch folder.
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/data/prefect

WORKDIR /app
COPY requirements-uv.lock requirements.lock ./
RUN pip install --no-cache-dir --no-deps --require-hashes -r requirements-uv.lock \
    && uv pip install --system --no-cache --require-hashes -r requirements.lock

COPY pyproject.toml prefect.yaml README.md ./
COPY flows ./flows
COPY blocks ./blocks
COPY streamlit_app ./streamlit_app
COPY .streamlit ./.streamlit
COPY dbt ./dbt
# dbt writes its parse and logs outside the (read-only) code
ENV DBT_TARGET_PATH=/tmp/dbt/target \
    DBT_LOG_PATH=/tmp/dbt/logs
# dbt's parse for compose's default worker (local target, its paths), saved in the image so
# the first tick loads it (flows/runtime/dbt_manifest.py); other settings parse at first tick
RUN uv pip install --system --no-cache --no-deps -e . \
    && rm -rf cryptolytics.egg-info \
    && CRYPTOLYTICS_DUCKDB_PATH=/data/warehouse.duckdb CRYPTOLYTICS_WAREHOUSE_MEMORY_LIMIT=128MB \
       python -m flows.runtime.dbt_manifest \
    && useradd --create-home --uid 10001 cryptolytics \
    && mkdir -p /data /serving /prefect \
    && chown cryptolytics /data /serving /prefect \
    && chown -R cryptolytics /tmp/dbt

USER cryptolytics
VOLUME ["/data", "/serving"]
