"""Options of the worker daemon (group ``[DEFAULT]``)."""

from __future__ import annotations

import socket

from oslo_config import cfg

__all__ = ["register_opts", "register_cli_opts", "list_opts", "cli_opts", "worker_opts"]

cli_opts = [
    cfg.StrOpt(
        "driver",
        help="Name of the driver to serve, as registered in the 'computed.drivers' "
        "entry-point namespace (for example: fake, libvirt, xenapi, hyperv).",
    ),
    cfg.ListOpt(
        "hosts",
        default=[],
        help="Compute hosts this worker serves, comma separated. The worker "
        "consumes the queue of each one it owns (topic 'compute', the host as "
        "server name).",
    ),
]

worker_opts = [
    cfg.StrOpt(
        "worker_id",
        help="Identity of this worker in the registry. Defaults to "
        "'<machine name>-<driver>' (with '-<pid>' appended when a live worker holds "
        "that already); set it when one machine runs several workers of the same "
        "driver. A worker refuses to start under an id a live worker holds.",
    ),
    cfg.StrOpt(
        "machine",
        default=socket.gethostname(),
        sample_default="<hostname>",
        help="Name of the machine this worker runs on, shown to operators.",
    ),
    cfg.StrOpt(
        "group",
        help="Ownership group of this worker. Workers of the same driver and group "
        "that declare the same host share it: one of them, chosen by a consistent "
        "hash ring over the live ones, consumes its queue, and another takes over "
        "when it stops heartbeating. Give workers that reach only part of a fleet "
        "their own group. Defaults to the driver's name.",
    ),
    cfg.FloatOpt(
        "heartbeat_interval",
        default=5.0,
        min=0.1,
        help="Seconds between two heartbeats written to the registry. At each "
        "heartbeat the worker also recomputes which of its hosts it owns, and again "
        "when another worker's last heartbeat grows older than '[registry] "
        "down_time', so a dead worker's hosts move within that down time.",
    ),
    cfg.FloatOpt(
        "drain_timeout",
        default=30.0,
        min=0.0,
        help="Seconds a stopping worker (SIGTERM or SIGINT) waits for operations "
        "already running to finish before it exits anyway.",
    ),
    cfg.FloatOpt(
        "broker_connect_timeout",
        default=10.0,
        min=0.1,
        help="Seconds the worker and the client wait for the message broker to "
        "answer before giving up with an error.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the worker's options.

    ``driver`` and ``hosts`` are registered as plain options here, so that a
    scheduler importing the client library never gains command-line flags;
    the ``computed`` command registers them for its command line first.
    """
    conf.register_opts(worker_opts)
    conf.register_opts(cli_opts)


def register_cli_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_cli_opts(cli_opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(None, cli_opts + worker_opts)]
