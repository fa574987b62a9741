"""Over the bus: a ``computed`` worker with the hyperv driver, a real broker, a WinRM server.

The WinRM test server runs as a process of its own (``python -m tests.winrmserver``),
as a Hyper-V host would be a machine of its own; the worker reaches it over
NTLM-sealed WinRM and the test drives it through ``rpcapi.ComputeAPI``.
Skipped where the ``hyperv`` entry point of ``computed.drivers`` is not installed.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest

from computed import exception
from computed.objects import InstanceSpec
from tests.functional import _drivers

from .conftest import PASSWORD, USER

pytestmark = [pytest.mark.hyperv, pytest.mark.functional]


@pytest.fixture
def winrm_server() -> Iterator[str]:
    """``python -m tests.winrmserver`` serving host HV01; yields its URL."""
    args = ["--user", USER, "--password", PASSWORD, "--host", "HV01"]
    with _drivers.server_process("tests.winrmserver", *args) as line:
        if not line.startswith("http"):
            raise RuntimeError(f"the WinRM test server did not start: {line!r}")
        yield line.split()[0]


def test_worker_serves_a_hyperv_host(deployment: Any, winrm_server: str) -> None:
    _drivers.start_worker(
        deployment,
        "hyperv",
        ["HV01"],
        host_urls={"HV01": winrm_server},
        username=USER,
        password=PASSWORD,
    )
    api = deployment.api()
    uuid = str(uuidlib.uuid4())
    spec = InstanceSpec(uuid=uuid, name="over the bus", vcpus=2, memory_mb=256, disk_gb=4)

    started = time.monotonic()
    assert api.spawn(None, "HV01", spec).power_state == "running"
    info = api.get_info(None, "HV01", uuid)
    assert (info.name, info.vcpus, info.memory_mb, info.disk_gb) == ("over the bus", 2, 256, 4)
    assert api.power_off(None, "HV01", uuid).power_state == "stopped"
    with pytest.raises(exception.InvalidPowerState) as caught:
        api.pause(None, "HV01", uuid)
    assert caught.value.kwargs["state"] == "stopped"
    capabilities = api.get_capabilities(None, "HV01")
    assert (capabilities.driver, capabilities.support_tier) == ("hyperv", "partial")
    assert api.get_host_resources(None, "HV01").hypervisor_type == "hyperv"
    api.destroy(None, "HV01", uuid)
    api.destroy(None, "HV01", uuid)
    with pytest.raises(exception.InstanceNotFound) as missing:
        api.get_info(None, "HV01", uuid)
    assert missing.value.kwargs == {"uuid": uuid, "host": "HV01"}
    assert time.monotonic() - started < 60
    assert PASSWORD not in deployment.workers[0].log()
