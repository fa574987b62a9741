#!/usr/bin/env bash
# Run the test suite in .venv (made or refreshed by tools/bootstrap.sh).
#
# Arguments go to pytest as they are; without a test path among them the
# whole tests/ directory runs. The exit code is pytest's, and pytest's
# "no tests collected" (5) is reported as the failure it is.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

tools/bootstrap.sh

args=("$@")
has_path=""
for arg in "$@"; do
    case "$arg" in
        -*) ;;
        *) [ -e "${arg%%::*}" ] && has_path=1 ;;
    esac
done
[ -n "$has_path" ] || args+=(tests)

rc=0
.venv/bin/python -m pytest "${args[@]}" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run-tests: ERROR: pytest collected no tests (exit 5) from: ${args[*]}" >&2
fi
exit "$rc"
