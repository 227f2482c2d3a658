#!/usr/bin/env bash
# make compose-up: docker-compose.yml built and started in the background, on any Debian machine
# with or without registry access. engine.sh installs and starts Docker and compose when missing,
# and builds the TEST-ONLY stand-in base when python:3.11-slim-bookworm cannot be pulled. Waits
# until the service is healthy, then prints where it answers. `make compose-down` stops it.
#   POSTER_HOST_PORT=8000 (the loopback port published)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
# shellcheck source=deploy/engine.sh
source deploy/engine.sh
read -r -a compose <<<"$COMPOSE"
# Built with Debian's client and BuildKit, as compose would name it (docker-compose 1.29 would use
# the legacy builder, which also builds the keras stage the slim image does not need).
target=${POSTER_IMAGE_TARGET:-slim}
image=poster-genres:${POSTER_IMAGE_TAG:-2.2.0}
"$DOCKER" build --quiet "${BUILD_ARGS[@]}" --target "$target" --tag "$image" . \
  >/tmp/poster-genres-compose-build.log 2>&1 \
  || { tail -n 30 /tmp/poster-genres-compose-build.log >&2; echo "FAILED: docker build" >&2; exit 1; }
echo "== built in $(($(date +%s) - t0)) s"
"${compose[@]}" up --detach --no-build
container=$("${compose[@]}" ps --quiet poster-genres)
for _ in $(seq 120); do
  health=$("$DOCKER" inspect --format '{{.State.Health.Status}}' "$container")
  [[ "$health" == healthy ]] && break
  sleep 1
done
if [[ "$health" != healthy ]]; then
  "$DOCKER" logs --tail 20 "$container" >&2
  echo "FAILED: not healthy within 120 s" >&2
  exit 1
fi
echo "== healthy after $(($(date +%s) - t0)) s in all: http://127.0.0.1:${POSTER_HOST_PORT:-8000}/ (make compose-down stops it)"
