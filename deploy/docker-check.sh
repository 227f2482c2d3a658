#!/usr/bin/env bash
# make docker-check: build both targets of the project's Dockerfile (slim, the default, and keras)
# and check each serves like the venv.
#
# Engine, compose and base image as in engine.sh (installed/started/stand-in when needed). Builds
# with BuildKit (DOCKER_BUILDKIT=0 for the legacy builder; BOTH_BUILDERS=1 builds with each), then
# deploy/docker_check.py (`python -m deploy.docker_check`) brings docker-compose.yml up with each
# image, waits for healthy, predicts a real poster, compares with the venv's scorer and stops it
# within the grace.
#   PYTHON=.venv/bin/python  IMAGE=poster-genres:2.2.0  MODEL_VERSION=(the Dockerfile's default)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=${IMAGE:-poster-genres:2.2.0}
MODEL_VERSION=${MODEL_VERSION:-$(sed -n 's/^ARG MODEL_VERSION=//p' Dockerfile)}
# shellcheck source=deploy/engine.sh
source deploy/engine.sh

# The version shipped must be the committed one: a locally modified model never ships silently.
if git rev-parse --git-dir >/dev/null 2>&1 \
  && [[ -n "$(git status --porcelain -- "model_store/poster-genres/$MODEL_VERSION")" ]]; then
  echo "FAILED: model_store/poster-genres/$MODEL_VERSION has uncommitted changes" >&2
  exit 1
fi

build() {  # build TARGET TAG [legacy]
  local target=$1 tag=$2 mode=BuildKit kit=1 start
  if [[ "${3:-}" == legacy ]]; then mode="the legacy builder" kit=0; fi
  start=$(date +%s.%N)
  if ! DOCKER_BUILDKIT=$kit "$DOCKER" build --quiet "${BUILD_ARGS[@]}" --target "$target" \
    --build-arg "MODEL_VERSION=$MODEL_VERSION" --tag "$tag" . >/tmp/poster-genres-build.log 2>&1; then
    tail -n 30 /tmp/poster-genres-build.log >&2
    echo "FAILED: docker build --target $target ($mode)" >&2
    exit 1
  fi
  echo "== built $tag (--target $target) with $mode in $(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $start}") s"
}
for target in slim keras; do
  tag=$IMAGE
  [[ $target == slim ]] || tag=$IMAGE-$target
  if [[ "${BOTH_BUILDERS:-0}" == 1 ]]; then
    build "$target" "$tag" legacy
    build "$target" "$tag"
  elif [[ "${DOCKER_BUILDKIT:-1}" == 0 ]]; then
    build "$target" "$tag" legacy
  else
    build "$target" "$tag"
  fi
done
# Earlier builds of these images left untagged: only ours (by label) are removed.
"$DOCKER" image prune --force --filter label=org.opencontainers.image.title=poster-genres >/dev/null || true

"$PYTHON" -m deploy.docker_check "$MODEL_VERSION" "slim=${IMAGE#*:}" "keras=${IMAGE#*:}-keras"
echo "== docker-check passed in $(($(date +%s) - t0)) s"
