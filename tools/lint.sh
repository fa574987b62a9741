#!/usr/bin/env bash
# Lint and type checks, as CI runs them: ruff (rules in ruff.toml), ruff's
# formatter, and mypy (strict for the packages, per setup.cfg). Uses .venv
# (made by tools/bootstrap.sh); exits non-zero on the first check that fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PATHS=(computed rpcapi drivers tests tools)
echo "lint: ruff check"
.venv/bin/ruff check "${PATHS[@]}"
echo "lint: ruff format --check"
.venv/bin/ruff format --check "${PATHS[@]}"
echo "lint: mypy"
.venv/bin/mypy
# The walkthrough is a program of its own, outside the packages.
.venv/bin/mypy --explicit-package-bases tools/demo.py tools/demo_fleet.py
