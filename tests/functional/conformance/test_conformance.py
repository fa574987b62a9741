"""The conformance suite against every in-tree driver, each served by a real worker.

Each driver is reached through its real peer (tests/peers.py), and the suite
runs as its one command, ``computed-conformance``, exactly as a driver
author's CI would run it.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from computed.registry import Registry
from computed.testing.workers import console_command, write_config
from drivers import base
from tests.peers import PEERS, Unavailable

from ..conftest import DOWN_TIME, Deployment

#: A run of the whole suite over the bus: on the WinRM peer, every check is
#: a few PowerShell round trips, several minutes on a busy two-core machine.
pytestmark = [pytest.mark.conformance, pytest.mark.timeout(900)]


def run_conformance(
    deployment: Deployment,
    hosts: list[str],
    *extra: str,
    conformance: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any], str]:
    """Run ``computed-conformance`` against ``hosts``; return its status, JSON report and output.

    :param conformance: ``[conformance]`` options of the suite, such as the
        ``network`` and ``volume_path`` that the hosts under test have.
    """
    config = write_config(
        str(deployment.workdir / "conformance.conf"),
        {
            "DEFAULT": {"transport_url": deployment.broker.url},
            "registry": {"connection": deployment.registry_url, "down_time": DOWN_TIME},
            "conformance": conformance or {},
        },
    )
    report = deployment.workdir / "report.json"
    command = console_command("computed-conformance")
    hosts_args = [arg for host in hosts for arg in ("--host", host)]
    done = subprocess.run(
        [
            *command,
            "--config-file",
            config,
            *hosts_args,
            "--json",
            str(report),
            "--junit",
            str(deployment.workdir / "report.xml"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, data, done.stdout + done.stderr


#: Each driver with its peer's options; the fake driver in both of its stores:
#: files (``[fake] state_dir``, the functional tests' default) and memory. A
#: peer's ``conformance`` options (the network and volume path its hosts
#: have) go to the suite, not to the worker.
_CASES: list[tuple[str, dict[str, Any]]] = [
    *((driver, {}) for driver in sorted(PEERS)),
    ("fake", {"fake": {"state_dir": ""}}),
]


#: Operations with no unsupported.* check: every driver has them.
_ALWAYS = ("ping", "get_capabilities", "reboot")


@pytest.mark.parametrize(("driver", "store"), _CASES, ids=[*sorted(PEERS), "fake-in-memory"])
def test_in_tree_driver_is_conformant(
    deployment: Deployment, driver: str, store: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    if driver != "fake":
        request.applymarker(getattr(pytest.mark, driver))
    with ExitStack() as stack:
        try:
            hosts, options = PEERS[driver](stack, str(deployment.workdir))
        except Unavailable as exc:
            pytest.fail(f"the {driver} peer cannot run here: {exc}")
        suite_options = options.pop("conformance", {})
        in_memory = store.get("fake", {}).get("state_dir") == ""
        if in_memory:  # nothing outside the worker to change behind its back
            suite_options.pop("hypervisor_command")
        # One worker per host, so that moves go between worker processes; the
        # fake in memory needs both hosts in one process (its one store).
        for n, served in enumerate([hosts] if in_memory else [[host] for host in hosts]):
            deployment.start_worker(
                served,
                worker_id=f"cf-{driver}-{n}",
                DEFAULT={"driver": driver},
                **options,
                **store,
            )
        status, report, output = run_conformance(
            deployment, hosts, "--record", conformance=suite_options
        )
        assert report, output
        assert report["failing"] == [], output
        assert status == 0, output
        assert report["tier"] == "conformant"
        assert report["passed"] >= 40
        assert "By operation group:" in output
        if driver == "fake":  # the specification claims, and passes, every group
            assert {g: r["result"] for g, r in report["groups"].items()} == dict.fromkeys(
                base.OPERATION_GROUPS, "conformant"
            ), output
            skipped = {c["id"] for c in report["checks"] if c["outcome"] == "skip"}
            # Only the checks of what a driver lacks, and the fake lacks nothing.
            assert skipped == {
                *(f"unsupported.{op}" for op in base.ALL_OPERATIONS if op not in _ALWAYS),
                "unsupported.reboot.soft",
                "unsupported.reboot.hard",
                "spawn.devices.unsupported_refused",
                *(("events.stopped_by_itself", "events.deleted_out_of_band") if in_memory else ()),
            }, output
        if driver == "xenapi":  # two hosts of one pool: every kind of move runs over the bus
            groups = {g: r["result"] for g, r in report["groups"].items()}
            moving = ("migration", "live_migration", "evacuation")
            assert {g: groups[g] for g in moving} == dict.fromkeys(moving, "conformant"), output
        assert (Path(deployment.workdir) / "report.xml").read_text().startswith("<?xml")
        recorded = Registry(deployment.registry_url).latest_conformance()
        assert [(d, r.tier) for (d, _), r in recorded.items()] == [(driver, "conformant")]
