"""``computed-conformance``: run the conformance suite against live workers.

::

    computed-conformance --config-file computed.conf --host node-1 [--host node-2]
        [--only 'transition.*'] [--json report.json] [--junit report.xml] [--record]
    computed-conformance --list

The workers serving the hosts must be running; the suite reaches them
through the broker and registry named in the config file, as a scheduler
would; ``[conformance] network`` and ``volume_path`` name what the device
checks need on the hosts. The summary rates each operation group
(lifecycle, host, console, volumes, interfaces) on its own: conformant,
partial, untested or not claimed. ``--record`` stores the outcome in the
registry, where it sets the tier of that driver version (``computedctl
tiers``): conformant when no check failed, partial otherwise. Exit status: 0 when
every check passed or was skipped, 1 when a check failed, 2 for a usage or
configuration problem, 3 when the hosts cannot be reached at all.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence

from oslo_config import cfg

from computed import conf as computed_conf
from computed import exception, rpc
from computed.conformance import report
from computed.conformance.runner import run_suite, select_checks
from computed.registry import Registry
from computed.registry.api import TIER_UNTESTED
from computed.testing.notifications import NotificationCollector
from rpcapi import ComputeAPI

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    checks = select_checks(args.only)
    if args.list:
        for item in checks:
            print(f"{item.id:<44} {item.purpose}")
        return 0
    if not args.host:
        return _fail("name at least one host with --host", 2)
    if not checks:
        return _fail(f"no check matches {args.only}", 2)
    conf = computed_conf.CONF
    computed_conf.register_all(conf)
    config_args = [item for path in args.config_file or [] for item in ("--config-file", path)]
    try:
        conf(
            config_args,
            project="computed",
            default_config_files=None if not args.config_file else [],
        )
        rpc.get_transport(conf).cleanup()  # registers transport_url
    except cfg.Error as exc:
        return _fail(f"configuration error: {exc}", 2)
    if args.transport_url:
        conf.set_override("transport_url", args.transport_url)

    registry = Registry(conf.registry.connection)
    api = ComputeAPI(conf, registry=registry, required_tier=TIER_UNTESTED)
    collector = NotificationCollector(
        rpc.get_notification_transport(conf),
        conf.notifications.topic,
        pool=f"conformance-{uuid.uuid4().hex[:8]}",
    ).start()
    try:
        print(f"Running {len(checks)} checks against {', '.join(args.host)}", flush=True)
        suite = run_suite(
            api,
            args.host,
            notifications=collector,
            checks=checks,
            notification_timeout=args.notification_timeout,
            progress=lambda result: print(report.progress_line(result), flush=True),
            network=conf.conformance.network,
            volume_path=conf.conformance.volume_path,
            image=conf.conformance.image,
            volume_command=conf.conformance.volume_command,
            volume_extend_command=conf.conformance.volume_extend_command,
            hypervisor_command=conf.conformance.hypervisor_command,
        )
    except exception.ComputedError as exc:
        return _fail(str(exc), 3)
    finally:
        collector.stop()
        api.cleanup()
    report.summary(suite, sys.stdout)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            report.dump_json(suite, out)
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as out:
            out.write(report.to_junit(suite))
    if args.record:
        recorded = registry.record_conformance(suite.record())
        print(f"Recorded: {recorded.driver} {recorded.driver_version} is {recorded.tier}.")
    return 1 if suite.failing else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="computed-conformance", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--config-file", action="append", metavar="PATH", help="configuration file (repeatable)"
    )
    parser.add_argument(
        "--host",
        action="append",
        metavar="HOST",
        help="a host the worker under test serves (repeatable)",
    )
    parser.add_argument("--transport-url", metavar="URL", help="overrides [DEFAULT] transport_url")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="run only checks whose id matches (shell pattern, repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--json", metavar="FILE", help="write a machine-readable report")
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    parser.add_argument(
        "--record",
        action="store_true",
        help="record the outcome in the registry (sets the driver's tier)",
    )
    parser.add_argument(
        "--notification-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for a cast's outcome notification (default 60)",
    )
    return parser


def _fail(message: str, code: int) -> int:
    print(f"computed-conformance: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
