#!/usr/bin/env bash
# Creates or reuses .venv/ at the repository root and installs the pinned requirements.
# Usage: scripts/bootstrap.sh [engine|web|serve|dev]   (default: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
role="${1:-dev}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.installed-$role-$(cat requirements/*.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "requirements/$role.txt"
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
