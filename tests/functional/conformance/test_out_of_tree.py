"""Drivers from other distributions, a deliberately broken one, and tiers from recorded runs."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata

import pytest

from computed import exception
from computed.registry import Registry
from computed.testing.workers import console_command, write_config
from rpcapi import ComputeAPI

from ..conftest import DOWN_TIME, Deployment
from .test_conformance import run_conformance

pytestmark = pytest.mark.conformance


def _ctl(deployment: Deployment, *args: str) -> str:
    config = write_config(
        str(deployment.workdir / "ctl.conf"),
        {"registry": {"connection": deployment.registry_url, "down_time": DOWN_TIME}},
    )
    command = console_command("computedctl")
    return subprocess.run(
        [*command, "--config-file", config, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_example_driver_from_its_own_distribution_is_conformant(deployment: Deployment) -> None:
    pytest.importorskip(
        "computed_example.driver", reason="tools/bootstrap.sh installs tests/example_driver"
    )
    # The entry point comes from the example's own distribution, not from computed's.
    own = metadata.distribution("computed-example-driver").entry_points.select(
        group="computed.drivers"
    )
    assert [(e.name, e.value) for e in own] == [("example", "computed_example.driver:ToyDriver")]
    ours = metadata.distribution("computed").entry_points.select(group="computed.drivers")
    assert "example" not in {e.name for e in ours}
    deployment.start_worker(["toy-1", "toy-2"], worker_id="toy", DEFAULT={"driver": "example"})
    status, report, output = run_conformance(deployment, ["toy-1", "toy-2"], "--record")
    assert (status, report["failing"], report["tier"]) == (0, [], "conformant"), output
    outcomes = {c["id"]: c["outcome"] for c in report["checks"]}
    # What it declares it cannot do is checked to be refused, not skipped over.
    assert outcomes["unsupported.suspend"] == "pass"
    assert outcomes["unsupported.reboot.soft"] == "pass"
    assert outcomes["transition.suspend.from_running"] == "skip"
    assert outcomes["concurrency.across_hosts"] == "pass"
    tiers = json.loads(_ctl(deployment, "tiers", "--json"))
    assert [(t["driver"], t["driver_version"], t["tier"]) for t in tiers] == [
        ("example", "0.3.0", "conformant")
    ]


def test_broken_driver_is_reported_with_the_failing_check_ids(deployment: Deployment) -> None:
    broken = pytest.importorskip(
        "computed_broken.driver", reason="tools/bootstrap.sh installs tests/broken_driver"
    )
    deployment.start_worker(["bad-1"], worker_id="bad", DEFAULT={"driver": "broken"})
    status, report, output = run_conformance(deployment, ["bad-1"], "--record")
    assert status == 1, output
    assert report["failing"] == broken.EXPECTED_FAILURES, output
    assert report["tier"] == "partial"
    # Rated per group: its bugs are in the lifecycle and host groups; it
    # claims no console, volume, interface, image, rescue or moving operation.
    assert {g: r["result"] for g, r in report["groups"].items()} == {
        "lifecycle": "partial",
        "host": "partial",
        "console": "not claimed",
        "volumes": "not claimed",
        "interfaces": "not claimed",
        "images": "not claimed",
        "rescue": "not claimed",
        "migration": "not claimed",
        "live_migration": "not claimed",
        "evacuation": "not claimed",
    }
    assert "volumes     not claimed" in output
    for check_id in broken.EXPECTED_FAILURES:
        assert f"FAIL  {check_id}" in output
    junit = (deployment.workdir / "report.xml").read_text()
    assert junit.count("<failure ") == len(broken.EXPECTED_FAILURES)
    columns = ("-c", "driver", "-c", "driver_version", "-c", "tier", "-c", "failing")
    rows = json.loads(_ctl(deployment, "tiers", "-f", "json", *columns))
    assert rows == [
        {
            "driver": "broken",
            "driver_version": "0.0.1",
            "tier": "partial",
            "failing": broken.EXPECTED_FAILURES,
        }
    ]
    workers = json.loads(_ctl(deployment, "workers", "--json"))
    assert [(w["id"], w["tier"]) for w in workers] == [("bad", "partial")]


def test_recorded_tiers_decide_which_drivers_get_work(deployment: Deployment) -> None:
    deployment.start_worker(["fake-1"], worker_id="f1")
    registry = Registry(deployment.registry_url)
    strict = ComputeAPI(deployment.conf, registry=registry, required_tier="partial")
    deployment.apis.append(strict)
    with pytest.raises(exception.HostUnavailable) as caught:
        strict.ping(None, "fake-1")
    assert "driver fake 1.0 is untested" in str(caught.value)
    assert "computed-conformance --host fake-1 --record" in str(caught.value)

    status, report, output = run_conformance(deployment, ["fake-1"], "--only", "host.*", "--record")
    assert (status, report["tier"]) == (0, "conformant"), output
    strict._resolver.refresh()
    assert strict.ping(None, "fake-1").host == "fake-1"

    stricter = ComputeAPI(deployment.conf, registry=registry, required_tier="conformant")
    deployment.apis.append(stricter)
    assert stricter.ping(None, "fake-1").host == "fake-1"
