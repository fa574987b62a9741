"""Registering an option group on one ConfigOpts without sharing it with others."""

from __future__ import annotations

from oslo_config import cfg

__all__ = ["register"]


def register(conf: cfg.ConfigOpts, group: cfg.OptGroup, opts: list[cfg.Opt]) -> None:
    """Register ``opts`` in a copy of ``group`` of ``conf``'s own.

    oslo.config keeps a group's overrides in the OptGroup object: registered
    as it is in two ConfigOpts (a client library's and its host
    application's, or two tests'), an override set on one shows on the other.
    """
    conf.register_group(cfg.OptGroup(group.name, title=group.title, help=group.help))
    conf.register_opts(opts, group=group.name)
