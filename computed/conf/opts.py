"""Entry point for oslo-config-generator: every option of the project."""

from __future__ import annotations

from oslo_config import cfg

from computed.conf import MODULES

__all__ = ["list_opts"]


def list_opts() -> list[tuple[str | cfg.OptGroup | None, list[cfg.Opt]]]:
    result: list[tuple[str | cfg.OptGroup | None, list[cfg.Opt]]] = []
    for module in MODULES:
        result.extend(module.list_opts())
    return result
