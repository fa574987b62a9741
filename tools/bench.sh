#!/bin/sh
# Benchmark: full-stack computed calls and casts against bare oslo.messaging,
# on a private RabbitMQ this run starts and stops. Not a test: it never fails
# on speed. Options are passed on, e.g. tools/bench.sh --rounds 5 --json out.json
# (tools/bench.sh --help lists them). nameko and Celery are measured beside it
# when the bench extra is installed (.venv/bin/pip install -e '.[bench]').
set -eu
cd "$(dirname "$0")/.."
if [ -f tools/bootstrap.sh ]; then
    bash tools/bootstrap.sh
fi
exec .venv/bin/python -m tests.bench "$@"
