#!/usr/bin/env bash
# Sets up tools/venv (idempotent) and runs the unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec tools/venv/bin/python -m pytest -q "$@"
