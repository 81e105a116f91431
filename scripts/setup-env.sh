#!/usr/bin/env bash
# Creates .venv and installs the project with what its tests need; re-runs only when
# pyproject.toml changed. Usage: scripts/setup-env.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "Installing the project and its test tools into .venv (first run takes a minute)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  if ! command -v nvidia-smi >/dev/null && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # No GPU here: pin the release whose CPU build the package index offers first, so that the
    # "gpu" extra below does not pull a multi-GB CUDA build. Elsewhere, point PIP_INDEX_URL or
    # PIP_EXTRA_INDEX_URL at a CPU wheel index before running this.
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
  fi
  .venv/bin/python -m pip install --quiet -e ".[dev,gpu]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
