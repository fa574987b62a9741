#!/usr/bin/env bash
# Prepare this machine to run computed's tests; safe to run again and again.
#
#  1. As root on Debian: install the system packages the tests need
#     (rabbitmq-server, postgresql, pkg-config, libvirt-dev, libvirt-daemon
#     with its qemu driver, qemu-system-x86 for the real-guest test) with apt, without
#     letting their system services start. The tests start private servers on
#     their own ports (computed.testing), so a system RabbitMQ or PostgreSQL
#     that already runs is left alone. Not root: apt is skipped and the
#     missing packages are named.
#  2. Create the virtualenv .venv at the repository root if it is missing and
#     `pip install -e '.[test]'` into it, again only when setup.cfg/setup.py
#     changed since the last successful install.
#
# Environment: PYTHON (default python3) is the interpreter for a new .venv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

APT_PACKAGES=(rabbitmq-server postgresql pkg-config libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils)
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
STAMP="$VENV/.bootstrap-stamp"
OUT_OF_TREE=(tests/example_driver tests/broken_driver)
POLICY=/usr/sbin/policy-rc.d
POLICY_OURS=""
LOG=""

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: ERROR: %s\n' "$*" >&2; exit 1; }
show_log() {
    [ -n "$LOG" ] && [ -s "$LOG" ] && { echo "--- last lines of $LOG ---" >&2; tail -n 30 "$LOG" >&2; }
    return 0
}

cleanup() {
    [ -n "$POLICY_OURS" ] && rm -f "$POLICY"
    [ -n "$LOG" ] && rm -f "$LOG"
    return 0
}
trap cleanup EXIT

missing_packages() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q ' installed$'; then
            echo "$pkg"
        fi
    done
}

apt_lists_present() {
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

install_system_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian system: make sure RabbitMQ, PostgreSQL, pkg-config and the libvirt headers are installed"
        return 0
    fi
    local missing
    mapfile -t missing < <(missing_packages)
    if [ "${#missing[@]}" -eq 0 ]; then
        say "system packages present (${APT_PACKAGES[*]})"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        say "not root: skipping apt; these Debian packages must be installed for all tests to run: ${missing[*]}"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"

    LOG=$(mktemp /tmp/computed-bootstrap.XXXXXX)
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting their system services
    # (invoke-rc.d and deb-systemd-invoke obey policy-rc.d's exit code 101).
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\n# added by computed tools/bootstrap.sh during apt-get install\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        POLICY_OURS=1
    fi
    if ! apt_lists_present; then
        say "apt-get update"
        apt-get update -q </dev/null >>"$LOG" 2>&1 || { show_log; die "apt-get update failed"; }
    fi
    say "apt-get install ${missing[*]}"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >>"$LOG" 2>&1; then
        # the package lists may be stale: refresh them once and retry
        say "apt-get install failed; refreshing package lists and retrying"
        apt-get update -q </dev/null >>"$LOG" 2>&1 || { show_log; die "apt-get update failed"; }
        apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >>"$LOG" 2>&1 \
            || { show_log; die "apt-get install ${missing[*]} failed"; }
    fi
    if [ -n "$POLICY_OURS" ]; then
        rm -f "$POLICY"
        POLICY_OURS=""
    fi
    mapfile -t missing < <(missing_packages)
    [ "${#missing[@]}" -eq 0 ] || { show_log; die "still not installed after apt-get: ${missing[*]}"; }
    rm -f "$LOG"
    LOG=""
}

requirements_hash() {
    {
        echo "$ROOT"
        "$VENV/bin/python" -c 'import sys; print(sys.version)'
        local f
        for f in setup.cfg setup.py pyproject.toml; do
            if [ -f "$f" ]; then cat "$f"; fi
        done
        find "${OUT_OF_TREE[@]}" -type f \( -name '*.py' -o -name setup.cfg \) | sort | xargs cat
    } | sha256sum | cut -d' ' -f1
}

make_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: Python 3.11 or newer is needed"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$("$PYTHON" -V 2>&1) is too old: Python 3.11 or newer is needed (set PYTHON=...)"
    say "creating virtualenv .venv with $("$PYTHON" -V 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "python -m venv failed (on Debian's own python3: apt-get install python3-venv)"
}

install_project() {
    local want
    want=$(requirements_hash)
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        say ".venv is up to date"
        return 0
    fi
    say "pip install -e '.[test]' into .venv"
    LOG=$(mktemp /tmp/computed-bootstrap.XXXXXX)
    rm -f "$STAMP"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -e ".[test]" \
        </dev/null >"$LOG" 2>&1 || { show_log; die "pip install -e '.[test]' failed"; }
    # Driver distributions of their own, installed the way a vendor's would be
    # (not editable, no dependency resolution: they need only computed).
    say "pip install ${OUT_OF_TREE[*]} (out-of-tree driver distributions for the tests)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q --no-deps --force-reinstall \
        "${OUT_OF_TREE[@]}" </dev/null >"$LOG" 2>&1 || { show_log; die "installing ${OUT_OF_TREE[*]} failed"; }
    echo "$want" >"$STAMP"
    rm -f "$LOG"
    LOG=""
}

install_system_packages
make_venv
install_project
say "ready"
