# One image for the Prefect server, the worker that runs the flows, and the analyst app
# (docker-compose.yml). Dependencies come from requirements.lock (exact versions).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/data/prefect

WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml prefect.yaml ./
COPY flows ./flows
COPY blocks ./blocks
COPY streamlit_app ./streamlit_app
COPY dbt ./dbt
RUN pip install --no-cache-dir --no-deps -e . \
    && useradd --create-home --uid 10001 cryptolytics \
    && mkdir -p /data \
    && chown -R cryptolytics /app /data

USER cryptolytics
VOLUME ["/data"]
