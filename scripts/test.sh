#!/usr/bin/env bash
# Runs the whole test suite against the local PostgreSQL and Redis (see README, "Tests").
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-packages.sh
scripts/setup-env.sh
exec .venv/bin/python -m pytest "$@"
