#!/usr/bin/env bash
# make replicas-check: 3 replicas of the image behind nginx on one machine, under load, while one
# is stopped, one killed, and all are replaced by the other model version (deploy/replicas_check.py
# says what is checked). Builds the images it needs (cached after the first run).
#   PYTHON=.venv/bin/python  IMAGE=poster-genres:2.2.0
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=${IMAGE:-poster-genres:2.2.0}
MODEL_VERSION=$(sed -n 's/^ARG MODEL_VERSION=//p' Dockerfile)
# The other version in the store (the rolling replacement's target): the previous one.
OTHER_VERSION=${OTHER_VERSION:-$(git ls-files model_store/poster-genres | cut -d/ -f3 | sort -u \
  | grep -vx "$MODEL_VERSION" | tail -n 1)}
OTHER_IMAGE="$IMAGE-model-$OTHER_VERSION"
BALANCER_IMAGE=poster-genres-balancer:2.2.0  # the replicas compose file's
# shellcheck source=deploy/engine.sh
source deploy/engine.sh

build() {  # build TAG CONTEXT [args...]
  local tag=$1 context=$2 start
  shift 2
  start=$(date +%s)
  if ! "$DOCKER" build --quiet "${BUILD_ARGS[@]}" "$@" --tag "$tag" "$context" \
    >/tmp/poster-genres-build.log 2>&1; then
    tail -n 30 /tmp/poster-genres-build.log >&2
    echo "FAILED: docker build $tag" >&2
    exit 1
  fi
  echo "== built $tag in $(($(date +%s) - start)) s"
}
build "$IMAGE" . --build-arg "MODEL_VERSION=$MODEL_VERSION"
build "$OTHER_IMAGE" . --build-arg "MODEL_VERSION=$OTHER_VERSION"
build "$BALANCER_IMAGE" deploy/nginx
"$DOCKER" image prune --force --filter label=org.opencontainers.image.title=poster-genres >/dev/null || true

echo "== replicas: $MODEL_VERSION x 3, then rolled to $OTHER_VERSION"
timeout 600 "$PYTHON" -m deploy.replicas_check "$IMAGE" "$OTHER_IMAGE" "$BALANCER_IMAGE"
# The same images through deploy/compose.replicas.yml itself, with this machine's compose.
"$PYTHON" -m deploy.compose_replicas_check
echo "== replicas-check passed in $(($(date +%s) - t0)) s"
