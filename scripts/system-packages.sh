#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing: Chromium for the browser tests
# (and, with --services, the PostgreSQL and Redis clients that CI uses to wait for the services).
# As root it uses apt-get; otherwise it says exactly what to install and fails.
# Usage: scripts/system-packages.sh [--services]
set -euo pipefail

need=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "${CHROMIUM:-}" ] || need+=(chromium)
if [ "${1:-}" = "--services" ]; then
  command -v pg_isready >/dev/null || need+=(postgresql-client)
  command -v redis-cli >/dev/null || need+=(redis-tools)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then
  echo "Installing ${need[*]} (sudo apt-get)"
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "The tests need these packages: ${need[*]}." >&2
  echo "Install them (Debian/Ubuntu: sudo apt-get install ${need[*]}), or set CHROMIUM=/path/to/chromium." >&2
  exit 1
fi
