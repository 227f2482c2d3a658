#!/usr/bin/env bash
# make docker-check: build the project's Dockerfile and check the image serves like the venv.
#
# Engine and base image as in engine.sh (installed/started/stand-in when needed). Builds with
# BuildKit (DOCKER_BUILDKIT=0 for the legacy builder; BOTH_BUILDERS=1 builds with each), then
# deploy/docker_check.py runs it with docker-compose.yml's restrictions, waits for healthy,
# predicts a real poster, compares with the venv's scorer and stops it within the grace.
#   PYTHON=.venv/bin/python  IMAGE=poster-genres:2.1.0  MODEL_VERSION=(the Dockerfile's default)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=${IMAGE:-poster-genres:2.1.0}
MODEL_VERSION=${MODEL_VERSION:-$(sed -n 's/^ARG MODEL_VERSION=//p' Dockerfile)}
# shellcheck source=deploy/engine.sh
source deploy/engine.sh

# The version shipped must be the committed one: a locally modified model never ships silently.
if git rev-parse --git-dir >/dev/null 2>&1 \
  && [[ -n "$(git status --porcelain -- "model_store/poster-genres/$MODEL_VERSION")" ]]; then
  echo "FAILED: model_store/poster-genres/$MODEL_VERSION has uncommitted changes" >&2
  exit 1
fi

build() {  # build [legacy]
  local mode=BuildKit kit=1 start
  if [[ "${1:-}" == legacy ]]; then mode="the legacy builder" kit=0; fi
  start=$(date +%s.%N)
  if ! DOCKER_BUILDKIT=$kit "$DOCKER" build --quiet "${BUILD_ARGS[@]}" \
    --build-arg "MODEL_VERSION=$MODEL_VERSION" --tag "$IMAGE" . >/tmp/poster-genres-build.log 2>&1; then
    tail -n 30 /tmp/poster-genres-build.log >&2
    echo "FAILED: docker build ($mode)" >&2
    exit 1
  fi
  echo "== built $IMAGE with $mode in $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $start}") s"
}
if [[ "${BOTH_BUILDERS:-0}" == 1 ]]; then
  build legacy
  build
elif [[ "${DOCKER_BUILDKIT:-1}" == 0 ]]; then
  build legacy
else
  build
fi
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
echo "== image $IMAGE: $((size / 1000000)) MB, serves $MODEL_VERSION"
# Earlier builds of this image left untagged: only ours (by label) are removed.
"$DOCKER" image prune --force --filter label=org.opencontainers.image.title=poster-genres >/dev/null || true

"$PYTHON" deploy/docker_check.py "$IMAGE" "$MODEL_VERSION"
echo "== docker-check passed in $(($(date +%s) - t0)) s"
