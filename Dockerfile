# syntax=docker/dockerfile:1
# Build stage: install the service (runtime dependencies only) into a virtual environment.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY poster_genres ./poster_genres
COPY app ./app
RUN /opt/venv/bin/pip install --no-cache-dir .

# Final stage: the venv (the service and the shared core), the shipped model, a non-root user.
# No training code, tests or data.
FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin poster
COPY --from=build /opt/venv /opt/venv
COPY model_store /srv/model_store
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    POSTER_MODEL_STORE=/srv/model_store \
    POSTER_HOST=0.0.0.0 \
    POSTER_PORT=8000 \
    POSTER_SHUTDOWN_GRACE_S=20
WORKDIR /srv
USER 10001
EXPOSE 8000
# The start period covers model load, checksum and warm-up of every batch shape.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-m", "app.healthcheck"]
CMD ["python", "-m", "app"]
