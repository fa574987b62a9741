"""Each documented semantic, broken on its own, is reported by the check named for it.

The drivers are entry points of the separately installed ``tests/broken_driver``
distribution (``computed_broken.variants``): the fake driver with one method
made wrong. Each runs in a worker of its own on two hosts, and the suite,
as ``computed-conformance``, must fail exactly the checks the variant names.
"""

from __future__ import annotations

import pytest

from ..conftest import Deployment
from .test_conformance import run_conformance

pytestmark = pytest.mark.conformance

variants = pytest.importorskip(
    "computed_broken.variants", reason="tools/bootstrap.sh installs tests/broken_driver"
).VARIANTS


@pytest.mark.parametrize("driver", sorted(variants))
def test_a_broken_semantic_is_reported_by_its_check(deployment: Deployment, driver: str) -> None:
    hosts = [f"{driver}-1", f"{driver}-2"]
    deployment.start_worker(hosts, worker_id=driver, DEFAULT={"driver": driver})
    status, report, output = run_conformance(deployment, hosts)
    assert status == 1, output
    assert report["failing"] == variants[driver], output
    assert report["tier"] == "partial"
    if driver == "broken-returns":
        # The worker names the driver and the operation, not an AttributeError.
        assert (
            f"The broken-returns driver failed on host {hosts[0]}: "
            "resume returned a NoneType, not InstanceInfo"
        ) in output
