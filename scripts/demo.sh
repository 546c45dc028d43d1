#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run the main job: `memberlab demo`.
# Usage: bash scripts/demo.sh [demo options...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
exec .venv/bin/memberlab demo "$@"
