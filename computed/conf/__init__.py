"""Configuration: one module per option group, registered on demand.

oslo.messaging registers some of its own groups only on the global
``cfg.CONF``, so the project uses the global object too. Nothing is
registered at import time: the commands register what they need (the
worker's command-line flags first), and the client library registers only
its own groups, so importing it never changes a host application's command
line.
"""

from __future__ import annotations

from oslo_config import cfg

from computed.conf import (
    client,
    conformance,
    inventory,
    listener,
    metrics,
    notifications,
    registry,
    upgrade_levels,
    worker,
)

__all__ = ["CONF", "MODULES", "register_all"]

CONF = cfg.CONF

#: The project's option modules, each with register_opts() and list_opts().
MODULES = (
    worker,
    inventory,
    listener,
    registry,
    client,
    notifications,
    conformance,
    upgrade_levels,
    metrics,
)


def register_all(conf: cfg.ConfigOpts) -> None:
    """Register every option group of the project (idempotent)."""
    for module in MODULES:
        module.register_opts(conf)
