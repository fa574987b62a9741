#!/usr/bin/env bash
# One RabbitMQ vhost and one user per driver type, so that a vendor's driver
# process can reach only its own queues (see docs/ownership.md, "Isolation").
#
#   etc/broker-isolation.sh fake libvirt xenapi hyperv
#
# For each driver type D it creates vhost "computed-D" and user "computed-D"
# with full rights on that vhost only, plus a "computed-scheduler" user with
# rights on every driver vhost (the client holds one transport per driver
# type). Passwords come from COMPUTED_BROKER_PASSWORD_<D> (and
# COMPUTED_BROKER_PASSWORD_SCHEDULER); a missing one is generated and printed
# once. An existing user keeps its password. Set RABBITMQCTL to run against
# another node ("rabbitmqctl -n x@host").
#
# rabbitmqctl runs three times whatever the number of driver types (each run
# starts an Erlang VM, seconds on a busy host): two listings, then one
# import_definitions that adds the vhosts, users and permissions. Passwords
# go to the node as RabbitMQ's own salted SHA-256 hashes, never on a
# command line.
#
# Fresh vhosts are also what quorum queues need ([oslo_messaging_rabbit]
# rabbit_quorum_queue = true): an exchange declared non-durable earlier makes
# a quorum-queue worker fail with PRECONDITION_FAILED.
set -euo pipefail

CTL=${RABBITMQCTL:-/usr/sbin/rabbitmqctl}
[ "$#" -gt 0 ] || { echo "usage: $0 DRIVER..." >&2; exit 2; }
for driver in "$@"; do
    [[ "$driver" =~ ^[A-Za-z0-9._-]+$ ]] || {
        echo "$0: a driver type is letters, digits, '.', '_' and '-': '$driver'" >&2
        exit 2
    }
done

password() {
    local var="COMPUTED_BROKER_PASSWORD_$(echo "$1" | tr '[:lower:]-' '[:upper:]_')"
    if [ -n "${!var:-}" ]; then
        printf '%s' "${!var}"
    else
        local generated
        generated=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
        echo "generated password for $1: $generated" >&2
        printf '%s' "$generated"
    fi
}

hex() { od -An -v -tx1 | tr -d ' \n'; }
unhex() { local bytes; bytes=$(sed 's/../\\x&/g' <<<"$1"); printf "$bytes"; }

# rabbit_password_hashing_sha256: base64(salt + SHA-256(salt + password)), 4-byte salt.
password_hash() {
    local salt digest
    salt=$(head -c 4 /dev/urandom | hex)
    digest=$(unhex "$salt$(printf '%s' "$1" | hex)" | sha256sum | cut -d' ' -f1)
    unhex "$salt$digest" | base64 -w0
}

users=$($CTL list_users -q | awk '{print $1}')
vhosts=$($CTL list_vhosts -q)
listed() { grep -qxF -- "$2" <<<"$1"; }

new_users=()
new_vhosts=()
permissions=()
# add_user USER NAME: USER with the password of NAME, unless USER exists.
add_user() {
    listed "$users" "$1" && return
    local hash
    hash=$(password_hash "$(password "$2")")
    new_users+=("{\"name\":\"$1\",\"password_hash\":\"$hash\",\"hashing_algorithm\":\"rabbit_password_hashing_sha256\",\"tags\":[]}")
}
allow() {
    permissions+=("{\"user\":\"$1\",\"vhost\":\"$2\",\"configure\":\".*\",\"write\":\".*\",\"read\":\".*\"}")
}

scheduler=computed-scheduler
add_user "$scheduler" scheduler
for driver in "$@"; do
    vhost="computed-$driver"
    user="computed-$driver"
    listed "$vhosts" "$vhost" || new_vhosts+=("{\"name\":\"$vhost\"}")
    add_user "$user" "$driver"
    allow "$user" "$vhost"
    allow "$scheduler" "$vhost"
done

join() { local IFS=,; printf '%s' "$*"; }
printf '{"users":[%s],"vhosts":[%s],"permissions":[%s]}' \
    "$(join "${new_users[@]}")" "$(join "${new_vhosts[@]}")" "$(join "${permissions[@]}")" |
    $CTL import_definitions --quiet --format json  # applied when it returns
echo "added ${#new_vhosts[@]} vhost(s) and ${#new_users[@]} user(s); set ${#permissions[@]} permission(s)"

for driver in "$@"; do
    echo "driver $driver: rabbit://computed-$driver:<password>@<broker>:5672/computed-$driver"
done
