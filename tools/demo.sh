#!/usr/bin/env bash
# The main job: set up this machine, then run the scheduler walkthrough
# against a private RabbitMQ and one computed worker per driver type.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
tools/bootstrap.sh
exec .venv/bin/python tools/demo.py "$@"
