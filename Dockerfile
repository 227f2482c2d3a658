# docker build -t poster-genres:2.2.0 .                       the slim image (LiteRT), the default
# docker build --target keras -t poster-genres:2.2.0-keras .  with TensorFlow/Keras as well
# No "# syntax=" line: BuildKit would fetch a frontend image from a registry for it. Builds with
# BuildKit and with the legacy builder (DOCKER_BUILDKIT=0) alike, needing only the base image,
# PyPI and Debian's mirror. Pin the base by digest where you can resolve one:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The model version served by default (declared once; each stage that uses it says
# `ARG MODEL_VERSION`), and more versions to ship beside it, served with ?version= (comma-separated;
# POSTER_MODEL_VERSIONS in the image): --build-arg MODEL_VERSIONS=20261127-lite0-v2
ARG MODEL_VERSION=20261130-lite0-v3
ARG MODEL_VERSIONS=

# Build stage of the keras target: its dependencies from the hash-pinned lock, then the service.
FROM ${PYTHON_IMAGE} AS build-keras
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# strip, for TensorFlow's libraries below; this stage is not shipped.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
# A mirror may be named with --build-arg PIP_INDEX_URL=...: the hashes still decide what installs.
ARG PIP_INDEX_URL
# Then drop what the service never loads: TensorFlow's C++ headers (for building custom ops,
# 287 MB) and its libraries' symbol tables (~230 MB; the dynamic symbols stay).
RUN /opt/venv/bin/pip install --require-hashes --no-deps ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} \
        -r requirements.lock \
    && rm -rf /opt/venv/lib/python3.11/site-packages/tensorflow/include \
    && find /opt/venv/lib/python3.11/site-packages/tensorflow -name '*.so*' -type f \
        -exec strip --strip-unneeded {} +
COPY pyproject.toml README.md ./
COPY poster_genres ./poster_genres
COPY app ./app
COPY scorer ./scorer
# The project itself, built with the lock's setuptools; then the installers go (nothing at run
# time imports pip, setuptools or wheel).
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/pip uninstall --yes setuptools wheel pip

# Build stage of the slim target: LiteRT, no TensorFlow (requirements-slim.lock).
FROM ${PYTHON_IMAGE} AS build-slim
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements-slim.lock ./
ARG PIP_INDEX_URL
RUN /opt/venv/bin/pip install --require-hashes --no-deps ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} \
        -r requirements-slim.lock
COPY pyproject.toml README.md ./
COPY poster_genres ./poster_genres
COPY app ./app
COPY scorer ./scorer
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/pip uninstall --yes setuptools wheel pip

# Only the versions the image serves, each its LiteRT files (both targets) and model.keras (the
# keras target): other versions in model_store/ (a local, uncommitted training run) never ship,
# and a version that does not exist fails the build. This stage itself is never shipped.
FROM ${PYTHON_IMAGE} AS models
ARG MODEL_VERSION
ARG MODEL_VERSIONS
COPY model_store/poster-genres /store/
# IFS splits the comma-separated list (the shell expands the ARGs, unquoted on purpose).
RUN IFS=', '; for version in $MODEL_VERSION $MODEL_VERSIONS; do \
        mkdir -p "/litert/poster-genres/$version" "/keras/poster-genres/$version" \
        && cp "/store/$version/model.tflite" "/store/$version/metadata.json" \
              "/store/$version/genres.json" "/litert/poster-genres/$version/" \
        && cp "/store/$version/model.keras" "/keras/poster-genres/$version/" \
        || exit 1; \
    done

# What both images share: a non-root user, and a root filesystem that may be read-only (docker run
# --read-only --tmpfs /tmp, as in docker-compose.yml): temporary files and Keras' config go to
# the tmpfs. The model versions come from the models stage above.
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin poster
ARG MODEL_VERSION
ARG MODEL_VERSIONS
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    POSTER_MODEL_STORE=/srv/model_store \
    POSTER_HOST=0.0.0.0 \
    POSTER_PORT=8000 \
    POSTER_SHUTDOWN_GRACE_S=20
ENV POSTER_MODEL_VERSION=${MODEL_VERSION} \
    POSTER_MODEL_VERSIONS=${MODEL_VERSIONS}
COPY --from=models /litert/ /srv/model_store/
WORKDIR /srv
EXPOSE 8000
# Ready in seconds (model load, checksum, warm-up of every batch shape). Docker 20.10 (Debian
# bookworm's) has no --start-interval, so the interval itself is short: healthy within 2 s of
# ready; each check is a ~40 ms Python process. The start period bounds a slow start.
HEALTHCHECK --interval=2s --timeout=2s --start-period=90s --retries=3 \
    CMD ["python", "-m", "app.healthcheck"]
CMD ["python", "-m", "app"]

# The keras target: the slim image's files plus TensorFlow/Keras and model.keras, for
# POSTER_RUNTIME=keras (the reference) and Grad-CAM through Keras. Serves LiteRT by default too.
FROM runtime AS keras
ARG MODEL_VERSION
COPY --from=build-keras /opt/venv /opt/venv
COPY --from=models /keras/ /srv/model_store/
LABEL org.opencontainers.image.title=poster-genres \
      org.opencontainers.image.version=2.2.0 \
      poster-genres.model-version=${MODEL_VERSION} \
      poster-genres.runtimes="litert keras"
USER 10001

# The slim target, the default (last stage): LiteRT, Pillow, NumPy and FastAPI, no TensorFlow.
# The shipped versions' model.tflite answers as model.keras does (checked at export), at about 3x
# the speed on CPUs without AVX-512, in an image a fraction of the size.
FROM runtime AS slim
ARG MODEL_VERSION
COPY --from=build-slim /opt/venv /opt/venv
LABEL org.opencontainers.image.title=poster-genres \
      org.opencontainers.image.version=2.2.0 \
      poster-genres.model-version=${MODEL_VERSION} \
      poster-genres.runtimes=litert
USER 10001
