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
from computed.objects import InstanceSpec, NetworkInterface, VolumeConnection
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


def test_worker_attaches_devices_over_the_bus(deployment: Any, xapi_process: str) -> None:
    _drivers.start_worker(
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
    iqn, portal = "iqn.2010-10.org.openstack:bus", "198.51.100.9:3260"
    observer.testing.add_iscsi_lun(iqn, portal, "1", str(2 * 1024**3))
    api = deployment.api()
    uuid = str(uuidlib.uuid4())
    api.spawn(None, HOST, InstanceSpec(uuid=uuid, name="devices", vcpus=1, memory_mb=256))

    connector = api.get_volume_connector(None, HOST)
    assert connector.initiator and connector.initiator.startswith("iqn.")
    data = {"target_portal": portal, "target_iqn": iqn, "target_lun": 1}
    connection = VolumeConnection(volume_id="vol-1", driver_volume_type="iscsi", data=data)
    info = api.attach_volume(None, HOST, uuid, connection, "vdb")
    assert (info.volume("vol-1").device_name, info.volume("vol-1").size_gb) == ("xvdb", 2)
    vif = NetworkInterface(
        port_id="port-1",
        mac_address="fa:16:3e:00:00:01",
        network="Pool-wide network associated with eth0",
    )
    assert api.attach_interface(None, HOST, uuid, vif).interface("port-1").device_name == "0"
    with pytest.raises(exception.DeviceNotFound):
        api.extend_volume(None, HOST, uuid, "vol-2", 3)
    assert api.detach_interface(None, HOST, uuid, "port-1").network_interfaces == []
    assert api.detach_volume(None, HOST, uuid, "vol-1").volume("vol-1") is None
    api.destroy(None, HOST, uuid)
