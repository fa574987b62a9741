"""``computedctl``: the operator's view of workers, hosts and moves, and registry upkeep.

::

    computedctl workers                 every worker: driver, status, RPC version, tier, heartbeat
    computedctl hosts [--moves]         every host, its owner, its candidates (and recent moves)
    computedctl moves [--host H] [--limit N]  recent changes of host owners
    computedctl worker disable ID [--reason TEXT]
    computedctl worker enable ID
    computedctl worker drain ID         clients hold its hosts' messages; stop it next
    computedctl worker delete ID
    computedctl host list               each host's inventory: free resources, age, disabled
    computedctl host disable HOST [--reason TEXT]   it takes no new instance
    computedctl host enable HOST
    computedctl host maintenance HOST [--reason TEXT]  disable it, move its instances off
    computedctl db sync                 bring the registry schema up to date
    computedctl db version              the schema revision in use
    computedctl drivers                 drivers installed in this environment
    computedctl tiers                   each driver version's tier, from recorded conformance runs
    computedctl upgrade-status [--json] versions, per-host caps, backported/refused counts
    computedctl upgrade check [--json]  can the deployment take this release? (exit 0, 1, 2)
    computedctl migration list [--host H] [--instance UUID] [--active]
    computedctl migration show ID       a move's hosts, sizes, status and error
    computedctl migration confirm ID    keep a finished resize or cold migration
    computedctl migration revert ID     undo it: back on the source as it was
    computedctl migration abort ID      stop a live migration in progress
    computedctl migration recover ID    take up a move whose orchestrator stopped
    computedctl registry grant DRIVER ROLE [--sql]  ROLE writes only DRIVER's rows
    computedctl registry key PATH       a new key for [registry] journal_key_file (mode 0600)
    computedctl help [COMMAND]

The command line is cliff's, as python-openstackclient's is: the commands
are entry points of the ``computed.ctl`` namespace (setup.cfg), and every
listing takes ``-f table|json|yaml|csv|value``, ``-c COLUMN`` (repeatable),
``--sort-column COLUMN``, ``--long`` for every column and ``--noindent``
for JSON; ``--json`` is the older spelling of ``-f json --long``. Errors are
one line on stderr and exit 1 (``--debug`` adds the traceback); a command
line it cannot parse exits 2; ``upgrade check`` exits with the worst result
of its checks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from cliff import app, commandmanager
from oslo_config import cfg

from computed import conf as computed_conf
from computed import exception

__all__ = ["ComputedCtl", "NAMESPACE", "main"]

#: The entry-point namespace of computedctl's commands.
NAMESPACE = "computed.ctl"


class _OneLine(logging.Formatter):
    """``computedctl: error: ...``, the way argparse words its own errors."""

    def format(self, record: logging.LogRecord) -> str:
        return f"computedctl: {record.levelname.lower()}: {super().format(record)}"


class ComputedCtl(app.App):
    """The ``computedctl`` application: global options, configuration, commands."""

    NAME = "computedctl"
    LOG = logging.getLogger(NAME)

    def __init__(self) -> None:
        super().__init__(
            description="The operator's view of computed workers and hosts, and registry upkeep.",
            version=metadata.version("computed"),
            command_manager=commandmanager.CommandManager(NAMESPACE),
            deferred_help=True,
        )
        self.conf = computed_conf.CONF

    def build_option_parser(
        self,
        description: str | None,
        version: str | None,
        argparse_kwargs: dict[str, Any] | None = None,
    ) -> argparse.ArgumentParser:
        parser = super().build_option_parser(description, version, argparse_kwargs)
        parser.add_argument(
            "--config-file",
            action="append",
            metavar="PATH",
            help="configuration file (repeatable); default: the usual computed.conf locations",
        )
        return parser

    def configure_logging(self) -> None:
        """Warnings and errors on stderr, one line each; ``-v`` adds info, ``-vv`` debug.

        cliff's own default shows info messages too, which would bury a
        command's output under the libraries' (alembic's, oslo's).
        """
        root = logging.getLogger()
        root.setLevel(logging.DEBUG)
        if self.options.log_file:
            to_file = logging.FileHandler(self.options.log_file)
            to_file.setFormatter(logging.Formatter(self.LOG_FILE_MESSAGE_FORMAT))
            root.addHandler(to_file)
        console = logging.StreamHandler(self.stderr)
        levels = {0: logging.WARNING, 1: logging.WARNING, 2: logging.INFO}
        console.setLevel(levels.get(self.options.verbose_level, logging.DEBUG))
        console.setFormatter(_OneLine())
        root.addHandler(console)

    def initialize_app(self, argv: list[str]) -> None:
        """Load the configuration every command reads.

        :raises computed.exception.ConfigError: for a file or value
            oslo.config refuses.
        """
        computed_conf.register_all(self.conf)
        config_args: list[str] = []
        for path in self.options.config_file or []:
            config_args += ["--config-file", path]
        try:
            self.conf(
                config_args,
                project="computed",
                default_config_files=[] if self.options.config_file else None,
            )
        except cfg.Error as exc:
            raise exception.ConfigError(reason=str(exc)) from exc

    def run_subcommand(self, argv: list[str]) -> int:
        """Run the command ``argv`` names; a name it does not know is a one-line error, status 2."""
        try:
            self.command_manager.find_command(argv)
        except ValueError:
            matches = self.get_fuzzy_matches(argv[0])
            self.LOG.error(
                "'%s' is not a computedctl command%s; see 'computedctl help'",
                " ".join(argv),
                f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else "",
            )
            return 2
        return super().run_subcommand(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return ComputedCtl().run(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
