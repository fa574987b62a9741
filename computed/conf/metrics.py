"""Options of the worker's Prometheus endpoint (group ``[metrics]``)."""

from __future__ import annotations

from oslo_config import cfg

from computed.conf import _group

__all__ = ["register_opts", "list_opts"]

metrics_group = cfg.OptGroup(
    "metrics",
    title="Prometheus metrics of the worker",
    help="The worker's metrics (docs/operations.md lists them), served over HTTP "
    "at /metrics for a Prometheus server to scrape.",
)

metrics_opts = [
    cfg.BoolOpt(
        "enabled",
        default=False,
        help="Serve the worker's metrics at http://<listen_address>:<port>/metrics.",
    ),
    cfg.HostAddressOpt(
        "listen_address",
        default="127.0.0.1",
        help="Address the metrics endpoint listens on: an IP address or a host name. "
        "The endpoint has no authentication; listen on another address than "
        "loopback only where the network keeps it private.",
    ),
    cfg.PortOpt(
        "port",
        default=9180,
        min=1,
        help="TCP port of the metrics endpoint. Workers on one machine (one per "
        "driver type) each need a port of their own; a worker whose port is taken "
        "refuses to start.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    _group.register(conf, metrics_group, metrics_opts)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(metrics_group, metrics_opts)]
