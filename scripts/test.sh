#!/usr/bin/env bash
# The test command: installs everything from scratch (or reuses .venv/), then runs the suite.
# Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh
scripts/bootstrap.sh dev
exec .venv/bin/python -m pytest "$@"
