"""Smoke test: a ``computed --driver xenapi`` worker, a real broker, a xapi test server process.

The driver's own tests cover the contract; this shows the driver loads
through its entry point in a worker process and serves calls made through
``rpcapi.ComputeAPI``. Skipped where the ``xenapi`` entry point is not installed.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest

from computed import exception
from computed.objects import InstanceSpec
from tests.functional import _drivers
from tests.functional.xenapi.conftest import PASSWORD, POOL, USER

XenAPI = pytest.importorskip("XenAPI")

pytestmark = [pytest.mark.xenapi, pytest.mark.functional]

HOST = "xen1"
XAPI_HOST = "xs1"


@pytest.fixture
def xapi_process() -> Iterator[str]:
    """``python -m tests.xapiserver`` as a process of its own; yields the pool's URL."""
    pool = f"{POOL}:{USER}:{PASSWORD}:{XAPI_HOST}"
    with _drivers.server_process("tests.xapiserver", "--port", "0", "--pool", pool) as line:
        if not line.startswith("READY "):
            raise RuntimeError(f"xapi test server did not start: {line!r}")
        urls = dict(item.split("=", 1) for item in line.split()[1:])
        yield urls[POOL]


def test_worker_serves_a_xenapi_host(deployment: Any, xapi_process: str) -> None:
    worker = _drivers.start_worker(
        deployment,
        "xenapi",
        [HOST],
        pool_urls={POOL: xapi_process},
        hosts={HOST: f"{POOL}/{XAPI_HOST}"},
        username=USER,
        password=PASSWORD,
        connect_timeout=2,
        call_timeout=10,
    )
    observer = XenAPI.Session(xapi_process)
    observer.xenapi.login_with_password(USER, PASSWORD, "2.21", "observer")
    api = deployment.api()
    uuid = str(uuidlib.uuid4())
    spec = InstanceSpec(uuid=uuid, name="over the bus", vcpus=2, memory_mb=512, disk_gb=4)

    assert api.spawn(None, HOST, spec).power_state == "running"
    (vm,) = observer.xenapi.VM.get_by_name_label(f"computed-{uuid}")  # really in the pool
    assert observer.xenapi.VM.get_power_state(vm) == "Running"
    info = api.get_info(None, HOST, uuid)
    assert (info.name, info.vcpus, info.memory_mb, info.disk_gb) == ("over the bus", 2, 512, 4)

    observer.testing.expire_sessions()  # the worker must log in again by itself
    assert api.power_off(None, HOST, uuid).power_state == "stopped"
    assert observer.xenapi.VM.get_power_state(vm) == "Halted"
    capabilities = api.get_capabilities(None, HOST)
    assert (capabilities.driver, capabilities.support_tier) == ("xenapi", "partial")
    assert api.get_host_resources(None, HOST).hypervisor_type == "xen"

    api.destroy(None, HOST, uuid)
    api.destroy(None, HOST, uuid)
    with pytest.raises(exception.InstanceNotFound) as missing:
        api.get_info(None, HOST, uuid)
    assert missing.value.kwargs == {"uuid": uuid, "host": HOST}
    assert observer.xenapi.VM.get_by_name_label(f"computed-{uuid}") == []
    assert PASSWORD not in worker.log()
