"""What ``computedctl``'s commands share: the loaded configuration, the registry,
the ``--json``/``--long`` spelling of listings, and columns that read well in a
table and stay data in JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from cliff import columns, command, lister, show
from oslo_config import cfg

from computed.registry import Registry

__all__ = [
    "Command",
    "Lister",
    "ShowOne",
    "Text",
    "JoinedList",
]

_T = TypeVar("_T")


class _Configured:
    """The configuration ``computedctl`` loaded (``--config-file``) before running the command."""

    app: Any

    @property
    def conf(self) -> cfg.ConfigOpts:
        conf: cfg.ConfigOpts = self.app.conf
        return conf

    def registry(self) -> Registry:
        return Registry(self.conf.registry.connection)


class Command(_Configured, command.Command):
    """A command that writes its own output: an action's one sentence, or a report."""


class ShowOne(_Configured, show.ShowOne):
    """One object, field by field (``-f table|json|yaml|shell|value``)."""


class Lister(_Configured, lister.Lister):
    """A listing (``-f table|json|yaml|csv|value``, ``-c``, ``--sort-column``).

    Column names are the keys of the JSON objects, so ``-c heartbeat_at``
    picks the field scripts read. Tables show :attr:`columns` unless
    ``--long`` asks for :attr:`long_columns` too; ``--json`` is the spelling
    of ``-f json --long`` that computedctl had before it took ``-f``, kept
    for the scripts written against it.
    """

    #: Shown by default.
    columns: tuple[str, ...] = ()
    #: Shown with ``--long`` (and ``--json``), after :attr:`columns`.
    long_columns: tuple[str, ...] = ()

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        if self.long_columns:
            parser.add_argument(
                "--long", action="store_true", help=f"also {', '.join(self.long_columns)}"
            )
        parser.add_argument(
            "--json",
            action="store_true",
            help="the same as -f json --long (the older spelling, kept for scripts)",
        )
        return parser

    def run(self, parsed_args: argparse.Namespace) -> int:
        if parsed_args.json:
            parsed_args.formatter = "json"
            parsed_args.long = True
        return super().run(parsed_args)

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        names = self.columns
        if getattr(parsed_args, "long", False):
            names += self.long_columns
        return names, [[row[name] for name in names] for row in self.rows(parsed_args)]

    def rows(self, parsed_args: argparse.Namespace) -> Iterable[dict[str, Any]]:
        """One dictionary a row, with a value for every column (long ones included)."""
        raise NotImplementedError


class Text(columns.FormattableColumn[_T], Generic[_T]):
    """A value that tables show as text of its own and JSON keeps as it is."""

    def __init__(self, value: _T, text: str | Callable[[_T], str]) -> None:
        super().__init__(value)
        self._text = text

    def human_readable(self) -> str:
        return self._text(self._value) if callable(self._text) else self._text


class JoinedList(columns.FormattableColumn[list[str]]):
    """A list of names: comma-separated in tables (``-`` when empty), a list in JSON."""

    def human_readable(self) -> str:
        return ",".join(self._value) or "-"
