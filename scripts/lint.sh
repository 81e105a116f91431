#!/usr/bin/env bash
# The layout's import rules (pyproject.toml, [tool.importlinter]) and ruff over the tree.
# Usage: scripts/lint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-env.sh
.venv/bin/lint-imports
.venv/bin/ruff check .
