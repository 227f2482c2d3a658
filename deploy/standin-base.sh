#!/usr/bin/env bash
# TEST-ONLY stand-in for python:3.11-slim-bookworm, for machines that reach Debian's mirror and
# PyPI but no container registry. Not for production: it is Debian bookworm (debootstrap
# --variant=minbase) with Debian's python3 (3.11.2) and python3-venv, `python` on PATH like the
# real image's /usr/local/bin/python, and this machine's CA bundle so that pip in builds trusts
# what this machine trusts. Labelled poster-genres.stand-in; `docker rmi` it to use the real one.
#
#   deploy/standin-base.sh [TAG]      # default tag python:3.11-slim-bookworm
set -euo pipefail
tag=${1:-python:3.11-slim-bookworm}
if [[ -x /usr/bin/docker ]]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# This machine's Debian mirror (deb822 or one-line sources), else Debian's own.
mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
  | grep -v -- '-security' | head -n 1 || true)
if [[ -z "$mirror" ]]; then
  mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' \
    | grep -v -- '-security' | head -n 1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security

rootfs=$(mktemp -d /tmp/standin-rootfs.XXXXXX)
cleanup() { umount "$rootfs/proc" 2>/dev/null || true; rm -rf "$rootfs"; }
trap cleanup EXIT
echo "   debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
  || { tail -n 20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
chroot "$rootfs" /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends \
    python3 python3-venv ca-certificates >/dev/null 2>&1 \
  && apt-get clean && rm -rf /var/lib/apt/lists/*'
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
: >"$rootfs/etc/resolv.conf"
tar -C "$rootfs" -c . | "$DOCKER" import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c "LABEL poster-genres.stand-in=\"debootstrap bookworm + Debian python3 $(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())'), test only\"" \
  -c 'CMD ["python3"]' - "$tag" >/dev/null
echo "   $tag: stand-in imported ($("$DOCKER" image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
