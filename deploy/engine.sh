#!/usr/bin/env bash
# Sourced by docker-check.sh and replicas-check.sh: a running Docker engine and the base image.
#
# - No engine: install Debian's docker.io (root and apt-get needed) and start dockerd with its
#   defaults. Under CI=true an engine that cannot be had is a failure, with the reason.
# - No base image locally and none pullable within 20 s (no registry reachable): build the
#   TEST-ONLY stand-in (deploy/standin-base.sh), once; later runs reuse it.
# - No compose (neither the v2 plugin nor docker-compose): install Debian's docker-compose.
# Sets DOCKER (Debian's client when present: it matches its engine and has BuildKit built in)
# and COMPOSE (the compose command, as one shell word list).

engine_fail() {
  echo "docker engine unavailable: $*" >&2
  if [[ "${CI:-}" == "true" ]]; then
    echo "FAILED: the image checks need a Docker engine under CI=true" >&2
  fi
  exit 1
}

if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=$(command -v docker || true); fi

if [[ -z "$DOCKER" ]] || ! command -v dockerd >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian's docker.io"
    apt-get update -qq >/dev/null || engine_fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null \
      || engine_fail "apt-get install docker.io failed"
    DOCKER=/usr/bin/docker
  else
    engine_fail "no docker client/dockerd, and cannot install docker.io (needs root and apt-get)"
  fi
fi

if ! "$DOCKER" info >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    engine_fail "the daemon is not running and only root can start it here"
  fi
  echo "== starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 1
  done
  "$DOCKER" info >/dev/null 2>&1 \
    || engine_fail "dockerd did not start within 60 s; last lines of /var/log/dockerd.log:
$(tail -n 5 /var/log/dockerd.log 2>/dev/null)"
fi
echo "== engine: $("$DOCKER" version --format '{{.Server.Version}}') ($DOCKER)"

# Compose: the client's v2 plugin, else the standalone docker-compose (deploy/compose.py decides;
# Debian's docker-compose 1.29 is installed when there is neither).
engine_dir="$(dirname "${BASH_SOURCE[0]}")"
if ! COMPOSE=$(python3 "$engine_dir/compose.py" "$DOCKER"); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian's docker-compose"
    apt-get update -qq >/dev/null || engine_fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null \
      || engine_fail "apt-get install docker-compose failed"
  fi
  COMPOSE=$(python3 "$engine_dir/compose.py" "$DOCKER") \
    || engine_fail "no compose: neither the docker compose plugin nor docker-compose"
fi
echo "== compose: $COMPOSE"

PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
if "$DOCKER" image inspect "$PYTHON_IMAGE" >/dev/null 2>&1; then
  :
elif timeout 20 "$DOCKER" pull -q "$PYTHON_IMAGE" >/dev/null 2>&1; then
  echo "== pulled $PYTHON_IMAGE"
else
  echo "== $PYTHON_IMAGE cannot be pulled: building the test-only stand-in"
  "$(dirname "${BASH_SOURCE[0]}")/standin-base.sh" "$PYTHON_IMAGE" || engine_fail "stand-in base failed"
fi
standin=$("$DOCKER" image inspect -f '{{index .Config.Labels "poster-genres.stand-in"}}' "$PYTHON_IMAGE" 2>/dev/null || true)
if [[ -n "$standin" && "$standin" != "<no value>" ]]; then
  echo "== base: $PYTHON_IMAGE is the TEST-ONLY stand-in ($standin)"
else
  echo "== base: $PYTHON_IMAGE"
fi

# BuildKit for every build here ($DOCKER, Debian's client, has it built in): it builds only the
# stages a target needs, where the legacy builder would also install TensorFlow for the keras
# stage when building the slim image.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-1}

# Build arguments from this machine's environment (never committed): proxies, a pip mirror.
BUILD_ARGS=()
for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  if [[ -n "${!var:-}" ]]; then BUILD_ARGS+=(--build-arg "$var=${!var}"); fi
done
if [[ "${PIP_INDEX_URL:-}" == http* ]]; then BUILD_ARGS+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL"); fi
BUILD_ARGS+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
