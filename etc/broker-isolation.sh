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
# once. Set RABBITMQCTL to run against another node ("rabbitmqctl -n x@host").
# Fresh vhosts are also what quorum queues need ([oslo_messaging_rabbit]
# rabbit_quorum_queue = true): an exchange declared non-durable earlier makes
# a quorum-queue worker fail with PRECONDITION_FAILED.
set -euo pipefail

CTL=${RABBITMQCTL:-/usr/sbin/rabbitmqctl}
[ "$#" -gt 0 ] || { echo "usage: $0 DRIVER..." >&2; exit 2; }

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

user_exists() { $CTL list_users -q | awk '{print $1}' | grep -qx "$1"; }

scheduler=computed-scheduler
user_exists "$scheduler" || $CTL add_user "$scheduler" "$(password scheduler)"

for driver in "$@"; do
    vhost="computed-$driver"
    user="computed-$driver"
    $CTL list_vhosts -q | grep -qx "$vhost" || $CTL add_vhost "$vhost"
    user_exists "$user" || $CTL add_user "$user" "$(password "$driver")"
    $CTL set_permissions -p "$vhost" "$user" ".*" ".*" ".*"
    $CTL set_permissions -p "$vhost" "$scheduler" ".*" ".*" ".*"
    echo "driver $driver: rabbit://$user:<password>@<broker>:5672/$vhost"
done
