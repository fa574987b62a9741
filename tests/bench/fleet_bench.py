"""Fleet benchmark: the inventory of many hosts read from the registry, against calling them.

``python -m tests.bench.fleet_bench [--hosts 10000] [--workers 10] [--call-hosts 1000]``

* ``inventory``: ``--workers`` inventory publishers (the worker's own
  :class:`computed._inventory.InventoryPublisher`, in this process, over
  fake drivers) record ``--hosts`` hosts in a registry (SQLite in a
  temporary directory, or ``--registry-url``): the statements and seconds
  of a first pass (every row written), of a pass where nothing changed
  (what every ``inventory_interval`` costs a quiet fleet), and of a pass
  where a tenth of the hosts changed; the registry writes per second each
  implies at the shipped ``inventory_interval``.
* ``list``: ``ComputeAPI.list_hosts`` over those hosts (all of them, and
  with a free-memory filter): seconds per listing, median of ``--rounds``.
* ``calls``: a private RabbitMQ and one fake worker serving
  ``--call-hosts`` hosts; ``ComputeAPI.for_each_host(..., "get_host_resources")``
  over them (``--concurrency``): seconds, and per host, which the 10,000
  hosts' figure extrapolates.

It asserts nothing about speed; figures are for one machine and one run
(``tests/functional/test_fleet_bench.py`` runs it tiny, so it keeps working).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

from oslo_config import cfg

from computed import conf as computed_conf
from computed import rpc
from computed._claims import HostTracker
from computed._inventory import InventoryPublisher
from computed.objects import InstanceSpec
from computed.registry import Registry, WorkerRecord
from computed.registry.api import HostInventoryRecord
from computed.testing.broker import RabbitMQBroker
from computed.testing.workers import WorkerProcess
from drivers.fake import FakeDriver
from rpcapi import ComputeAPI

#: The shipped [DEFAULT] inventory_interval and heartbeat_interval.
INVENTORY_INTERVAL = 60.0
HEARTBEAT_INTERVAL = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10000, help="hosts in the inventory (10000)")
    parser.add_argument("--workers", type=int, default=10, help="publishers, one per worker (10)")
    parser.add_argument("--call-hosts", type=int, default=1000, help="hosts called over RPC (1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="for_each_host's bound (32)")
    parser.add_argument("--rounds", type=int, default=5, help="listings to time (5)")
    parser.add_argument("--registry-url", help="a registry to use (default: SQLite, temporary)")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    return parser.parse_args(argv)


def _driver() -> FakeDriver:
    conf = cfg.ConfigOpts()
    FakeDriver.register_opts(conf)
    conf([], default_config_files=[])
    return FakeDriver(conf)


def _publishers(
    registry: Registry, hosts: list[str], workers: int, driver: FakeDriver
) -> list[InventoryPublisher]:
    publishers = []
    for n in range(workers):
        mine = hosts[n::workers]
        worker_id = f"bench-{n}"
        registry.register(
            WorkerRecord(
                id=worker_id,
                driver="fake",
                hosts=tuple(mine),
                rpc_version="1.3",
                rpc_min_version="1.0",
                support_tier="conformant",
                driver_version=driver.version,
            )
        )
        trackers = {host: HostTracker(host, driver) for host in mine}
        identity = HostInventoryRecord(
            host="",
            worker_id=worker_id,
            driver="fake",
            driver_version=driver.version,
            support_tier="conformant",
            capabilities={"operations": sorted(driver.operations), "features": []},
        )
        publishers.append(
            InventoryPublisher(
                registry,
                lambda trackers=trackers: trackers,  # type: ignore[misc]
                identity,
                HEARTBEAT_INTERVAL,
                INVENTORY_INTERVAL,
            )
        )
    return publishers


def _counts(publishers: list[InventoryPublisher]) -> tuple[int, int, int]:
    return (
        sum(p.statements for p in publishers),
        sum(p.rows_written for p in publishers),
        sum(p.rows_stamped for p in publishers),
    )


def _pass(publishers: list[InventoryPublisher], everything: bool) -> dict[str, float]:
    before = _counts(publishers)
    started = time.perf_counter()
    for publisher in publishers:
        publisher.publish(everything=everything)
    seconds = time.perf_counter() - started
    statements, written, stamped = (a - b for a, b in zip(_counts(publishers), before, strict=True))
    return {
        "statements": statements,
        "rows_written": written,
        "rows_stamped": stamped,
        "seconds": round(seconds, 3),
    }


def measure_inventory(registry: Registry, args: argparse.Namespace) -> dict[str, Any]:
    hosts = [f"node-{i:05d}" for i in range(args.hosts)]
    driver = _driver()
    for host in hosts:
        driver.init_host(host)
    publishers = _publishers(registry, hosts, args.workers, driver)
    first = _pass(publishers, everything=True)
    quiet = _pass(publishers, everything=True)
    for host in hosts[::10]:
        driver.spawn(host, InstanceSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=64))
    tenth = _pass(publishers, everything=True)
    flags_started = time.perf_counter()
    for publisher in publishers:
        publisher.read_flags()
    flags = time.perf_counter() - flags_started
    return {
        "hosts": args.hosts,
        "workers": args.workers,
        "first_pass": first,
        "quiet_pass": quiet,
        "tenth_changed_pass": tenth,
        # per second at the shipped inventory_interval
        "quiet_statements_per_s": round(quiet["statements"] / INVENTORY_INTERVAL, 3),
        "quiet_row_changes_per_s": round(
            (quiet["rows_written"] + quiet["rows_stamped"]) / INVENTORY_INTERVAL, 1
        ),
        "tenth_changed_statements_per_s": round(tenth["statements"] / INVENTORY_INTERVAL, 3),
        "flag_reads_per_s": round(args.workers / HEARTBEAT_INTERVAL, 3),
        "flag_read_all_workers_s": round(flags, 3),
    }


def measure_list(api: ComputeAPI, args: argparse.Namespace) -> dict[str, Any]:
    api.list_hosts()  # the client's copy of the workers, read once
    results: dict[str, Any] = {}
    for label, filters in (("all", {}), ("memory_mb_200000", {"memory_mb": 200000})):
        samples, found = [], 0
        for _ in range(args.rounds):
            started = time.perf_counter()
            found = len(api.list_hosts(**filters))
            samples.append(time.perf_counter() - started)
        results[label] = {"hosts": found, "median_s": round(statistics.median(samples), 3)}
    return results


def measure_calls(conf: cfg.ConfigOpts, workdir: str, args: argparse.Namespace) -> dict[str, Any]:
    hosts = [f"call-{i:05d}" for i in range(args.call_hosts)]
    registry_url = f"sqlite:///{workdir}/calls.sqlite"
    with RabbitMQBroker() as broker:
        rpc.get_transport(conf, url=broker.url).cleanup()
        conf.set_override("transport_url", broker.url)
        options = {
            "DEFAULT": {
                "transport_url": broker.url,
                "driver": "fake",
                "hosts": hosts,
                "worker_id": "calls",
            },
            "registry": {"connection": registry_url},
        }
        worker = WorkerProcess(workdir, options, name="calls").start(timeout=600)
        try:
            api = ComputeAPI(conf, registry=Registry(registry_url), required_tier="untested")
            try:
                api.for_each_host(None, hosts[:50], "ping", concurrency=args.concurrency)
                started = time.perf_counter()
                results = api.for_each_host(
                    None, hosts, "get_host_resources", concurrency=args.concurrency
                )
                seconds = time.perf_counter() - started
                listed = time.perf_counter()
                api.list_hosts()
                list_seconds = time.perf_counter() - listed
            finally:
                api.cleanup()
        finally:
            worker.terminate(timeout=120)
    failed = sum(1 for r in results.values() if not r.ok)
    return {
        "hosts": args.call_hosts,
        "concurrency": args.concurrency,
        "seconds": round(seconds, 3),
        "per_host_ms": round(1000 * seconds / args.call_hosts, 3),
        "failed": failed,
        "extrapolated_10000_hosts_s": round(10000 * seconds / args.call_hosts, 1),
        "list_hosts_same_hosts_s": round(list_seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    conf = computed_conf.CONF
    computed_conf.register_all(conf)
    conf([], project="computed", default_config_files=[])
    conf.set_override("down_time", 3600, group="registry")
    output: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as workdir:
        registry = Registry(args.registry_url or f"sqlite:///{workdir}/registry.sqlite")
        registry.migrate()
        output["inventory"] = measure_inventory(registry, args)
        api = ComputeAPI(conf, registry=registry, required_tier="untested")
        output["list"] = measure_list(api, args)
        if args.call_hosts:
            output["calls"] = measure_calls(conf, workdir, args)
    text = json.dumps(output, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
