"""Smoke test: a ``computed --driver libvirt`` worker, a real broker, a real libvirtd.

The shared conformance suite covers the contract over the bus; this only
shows the libvirt driver loads through its entry point and serves calls,
and that libvirt's lifecycle events reach a scheduler as instance events.
Skipped where the ``libvirt`` entry point is not installed.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import pytest

from computed import exception
from computed.objects import InstanceSpec, NetworkInterface, VolumeConnection
from computed.testing.libvirtd import Libvirtd
from tests.functional import _drivers

from .conftest import StateEvents

libvirt = pytest.importorskip("libvirt")

pytestmark = [pytest.mark.libvirt, pytest.mark.functional]

#: The test node's built-in domain, ``test``, which these tests keep, is given
#: 8 GiB of the node's 3 GiB: the workers over-commit memory fourfold, or no
#: spawn would be admitted.
ROOMY = {"ram_allocation_ratio": 4.0}


def test_worker_serves_a_libvirt_host(deployment: Any, daemon: Libvirtd, virt: Any) -> None:
    _drivers.start_worker(
        deployment, "libvirt", ["kvm1"], ROOMY, host_uris={"kvm1": daemon.uri_for()}
    )
    api = deployment.api()
    uuid = str(uuidlib.uuid4())
    spec = InstanceSpec(uuid=uuid, name="over the bus", vcpus=1, memory_mb=128, disk_gb=2)

    assert api.spawn(None, "kvm1", spec).power_state == "running"
    assert virt.lookupByUUIDString(uuid).isActive()  # really in libvirtd
    assert api.pause(None, "kvm1", uuid).power_state == "paused"
    with pytest.raises(exception.InvalidPowerState) as refused:
        api.suspend(None, "kvm1", uuid)
    assert refused.value.kwargs == {
        "uuid": uuid,
        "operation": "suspend",
        "state": "paused",
        "allowed": "running",
    }
    assert api.reboot(None, "kvm1", uuid, "hard").power_state == "running"
    assert uuid in {i.uuid for i in api.list_instances(None, "kvm1")}
    assert api.get_host_resources(None, "kvm1").hypervisor_type == "test"
    capabilities = api.get_capabilities(None, "kvm1")
    assert (capabilities.driver, capabilities.support_tier) == ("libvirt", "partial")
    api.destroy(None, "kvm1", uuid)
    api.destroy(None, "kvm1", uuid)
    with pytest.raises(exception.InstanceNotFound) as missing:
        api.get_info(None, "kvm1", uuid)
    assert missing.value.kwargs == {"uuid": uuid, "host": "kvm1"}


def test_worker_serves_devices_over_the_bus(deployment: Any, daemon: Libvirtd, virt: Any) -> None:
    _drivers.start_worker(
        deployment,
        "libvirt",
        ["kvm1"],
        ROOMY,
        host_uris={"kvm1": daemon.uri_for()},
        iscsi_initiators={"kvm1": "iqn.1993-08.org.debian:01:kvm1"},
    )
    api = deployment.api()
    uuid = str(uuidlib.uuid4())
    spec = InstanceSpec(
        uuid=uuid,
        name="devices over the bus",
        vcpus=1,
        memory_mb=128,
        network_interfaces=[
            NetworkInterface(port_id="p1", mac_address="52:54:00:00:00:01", network="default")
        ],
    )
    info = api.spawn(None, "kvm1", spec)
    assert [(i.port_id, i.device_name) for i in info.network_interfaces] == [("p1", "tapp1")]
    assert api.get_volume_connector(None, "kvm1").initiator == "iqn.1993-08.org.debian:01:kvm1"
    assert api.power_off(None, "kvm1", uuid).power_state == "stopped"

    connection = VolumeConnection(
        volume_id="v1", driver_volume_type="file", data={"device_path": "/srv/v1"}
    )
    info = api.attach_volume(None, "kvm1", uuid, connection, "/dev/vdb")
    assert [(d.volume_id, d.device_name, d.connection_info) for d in info.block_devices] == [
        ("v1", "vdb", None)
    ]
    assert api.extend_volume(None, "kvm1", uuid, "v1", 3).volume("v1").size_gb == 3
    with pytest.raises(exception.DeviceNotFound):
        api.extend_volume(None, "kvm1", uuid, "v2", 3)
    with pytest.raises(exception.DeviceConflict):
        api.attach_interface(
            None,
            "kvm1",
            uuid,
            NetworkInterface(port_id="p2", mac_address="52:54:00:00:00:01", network="default"),
        )
    assert api.detach_interface(None, "kvm1", uuid, "p1").network_interfaces == []
    assert api.detach_volume(None, "kvm1", uuid, "v1").block_devices == []
    assert api.power_on(None, "kvm1", uuid).power_state == "running"
    with pytest.raises(exception.InvalidPowerState):  # the test driver has no hot-plug
        api.attach_volume(None, "kvm1", uuid, connection)
    api.destroy(None, "kvm1", uuid)


def test_changes_on_the_hypervisor_arrive_as_events(
    deployment: Any, daemon: Libvirtd, virt: Any, state_events: StateEvents
) -> None:
    """Another libvirt client pauses, then destroys, a domain: libvirt's events make
    the worker publish both at once (its periodic look is off)."""
    worker = deployment.start_worker(
        ["kvm1"],
        "events",
        DEFAULT={"driver": "libvirt", **ROOMY},
        libvirt={"host_uris": {"kvm1": daemon.uri_for()}},
        notifications={"instance_sync_interval": 0},
    )
    assert worker is not None
    api = deployment.api()
    uuid = str(uuidlib.uuid4())
    api.spawn(None, "kvm1", InstanceSpec(uuid=uuid, name="watched", vcpus=1, memory_mb=128))
    api.get_info(None, "kvm1", uuid)  # known to the worker as running, by its own operation

    virt.lookupByUUIDString(uuid).suspend()
    assert state_events.wait(uuid, 1) == [
        ("instance.power_state.update", "running", "paused", "hypervisor")
    ]
    dom = virt.lookupByUUIDString(uuid)
    dom.undefine()  # still there, transient, until destroyed: no state to report in between
    dom.destroy()
    assert state_events.wait(uuid, 2)[1:] == [("instance.delete", "paused", None, "hypervisor")]
