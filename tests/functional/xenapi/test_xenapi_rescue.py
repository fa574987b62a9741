"""Rescue and unrescue (contract 1.3) against the xapi test server.

A rescue is a second VM, ``computed-<uuid>-rescue``, booting the rescue
image with the instance's root disk as its second disk; an observer's own
``XenAPI`` session checks it is there, and gone again after unrescue.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import pytest

from computed import exception
from computed.objects import (
    BlockDevice,
    DeviceKind,
    InstanceSpec,
    NetworkInterface,
    VolumeConnection,
)
from tests.functional import _drivers
from tests.functional._drivers import new_spec
from tests.functional.xenapi.conftest import HOST, DriverFactory
from tests.xapiserver import XapiTestServer

XenAPI = pytest.importorskip("XenAPI")

from drivers.xenapi import constants  # noqa: E402
from drivers.xenapi.driver import XenAPIDriver  # noqa: E402
from tests.functional.xenapi.test_xenapi_driver import instance_disks, vm_of  # noqa: E402

pytestmark = pytest.mark.xenapi

GiB = 1024**3
NETWORK = "Pool-wide network associated with eth0"


def rescue_vm(xapi: Any, uuid: str) -> str:
    (ref,) = xapi.VM.get_by_name_label(constants.rescue_name_label(uuid))
    return str(ref)


def image_spec(server: XapiTestServer, image: str = "cirros") -> InstanceSpec:
    """An instance built from an image, with an interface."""
    server.add_image(image, GiB)
    return new_spec(
        block_devices=[BlockDevice(kind="image", image=image, size_gb=2, boot_index=0)],
        network_interfaces=[
            NetworkInterface(port_id="port-1", mac_address="fa:16:3e:00:00:11", network=NETWORK)
        ],
    )


def test_rescue_boots_the_image_with_the_root_disk_second(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    spec = image_spec(server)
    before = driver.spawn(HOST, spec)
    vm = vm_of(xapi, spec.uuid)
    (root,) = instance_disks(xapi, vm)

    info = driver.rescue(HOST, spec.uuid, None)
    assert info.power_state == "rescued"
    assert info.block_devices == before.block_devices  # its own, not the rescue disk
    assert info.network_interfaces == before.network_interfaces
    assert xapi.VM.get_power_state(vm) == "Halted"
    rescue = rescue_vm(xapi, spec.uuid)
    assert xapi.VM.get_power_state(rescue) == "Running"
    disks = {xapi.VBD.get_userdevice(v): xapi.VBD.get_VDI(v) for v in xapi.VM.get_VBDs(rescue)}
    assert disks["1"] == root  # the instance's own disk, second
    assert xapi.VDI.get_name_label(disks["0"]).endswith("-rescue root")
    assert driver.get_info(HOST, spec.uuid).power_state == "rescued"
    assert [(i.uuid, i.power_state) for i in driver.list_instances(HOST)] == [
        (spec.uuid, "rescued")
    ]
    with pytest.raises(XenAPI.Failure) as blocked:  # nobody boots it meanwhile
        xapi.VM.start(vm, False, False)
    assert blocked.value.details[0] == "OPERATION_BLOCKED"

    after = driver.unrescue(HOST, spec.uuid)
    assert after.power_state == "running"
    assert after.block_devices == before.block_devices
    assert after.network_interfaces == before.network_interfaces
    assert xapi.VM.get_by_name_label(constants.rescue_name_label(spec.uuid)) == []
    assert xapi.VDI.get_all().count(disks["0"]) == 0  # the rescue disk is gone
    assert instance_disks(xapi, vm) == [root]
    assert xapi.VM.get_blocked_operations(vm) == {}


def test_rescue_image_and_template_disks(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    server.add_image("rescue-cd", GiB)
    spec = new_spec()  # the template's disk
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, "rescue-cd")
    (vbd,) = [v for v in xapi.VM.get_VBDs(rescue_vm(xapi, spec.uuid)) if xapi.VBD.get_bootable(v)]
    assert xapi.VBD.get_other_config(vbd)[constants.OTHER_CONFIG_IMAGE] == "rescue-cd"
    driver.unrescue(HOST, spec.uuid)
    driver.rescue(HOST, spec.uuid, None)  # the template's disk, provisioned afresh
    disks = xapi.VM.get_VBDs(rescue_vm(xapi, spec.uuid))
    assert sorted(xapi.VBD.get_userdevice(v) for v in disks) == ["0", "1"]


def test_rescue_from_stopped_and_the_no_ops(driver: XenAPIDriver, server: XapiTestServer) -> None:
    spec = image_spec(server)
    driver.spawn(HOST, spec)
    assert driver.unrescue(HOST, spec.uuid).power_state == "running"  # no-op
    driver.power_off(HOST, spec.uuid)
    assert driver.rescue(HOST, spec.uuid, None).power_state == "rescued"
    assert driver.rescue(HOST, spec.uuid, None).power_state == "rescued"  # no-op
    assert driver.unrescue(HOST, spec.uuid).power_state == "running"


@pytest.mark.parametrize("start", ["paused", "suspended"])
def test_rescue_refused_from(driver: XenAPIDriver, server: XapiTestServer, start: str) -> None:
    spec = image_spec(server)
    driver.spawn(HOST, spec)
    _drivers.reach(driver, HOST, spec.uuid, start)
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.rescue(HOST, spec.uuid, None)
    assert caught.value.kwargs == {
        "uuid": spec.uuid,
        "operation": "rescue",
        "state": start,
        "allowed": "running, stopped",
    }
    with pytest.raises(exception.InvalidPowerState) as unrescue:
        driver.unrescue(HOST, spec.uuid)
    assert unrescue.value.kwargs["allowed"] == "rescued"


def test_a_rescued_instance_takes_no_other_operation(
    driver: XenAPIDriver, server: XapiTestServer
) -> None:
    spec = image_spec(server)
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    refused = {
        "power_on": lambda: driver.power_on(HOST, spec.uuid),
        "power_off": lambda: driver.power_off(HOST, spec.uuid),
        "pause": lambda: driver.pause(HOST, spec.uuid),
        "reboot.hard": lambda: driver.reboot(HOST, spec.uuid, "hard"),
        "snapshot": lambda: driver.snapshot(HOST, spec.uuid, "x", lambda p: None),
        "detach_interface": lambda: driver.detach_interface(HOST, spec.uuid, "port-1"),
    }
    for operation, call in refused.items():
        with pytest.raises(exception.InvalidPowerState) as caught:
            call()
        assert (caught.value.kwargs["operation"], caught.value.kwargs["state"]) == (
            operation,
            "rescued",
        )
    console = driver.get_graphical_console(HOST, spec.uuid)  # the rescue VM's
    assert console.protocol == "vnc"
    assert driver.get_info(HOST, spec.uuid).power_state == "rescued"


def test_destroying_a_rescued_instance_removes_the_rescue(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    vdis_before = set(xapi.VDI.get_all())
    spec = image_spec(server)
    image_vdis = set(xapi.VDI.get_all()) - vdis_before
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    driver.destroy(HOST, spec.uuid)
    assert xapi.VM.get_by_name_label(constants.rescue_name_label(spec.uuid)) == []
    assert xapi.VM.get_by_name_label(constants.name_label(spec.uuid)) == []
    assert set(xapi.VDI.get_all()) == vdis_before | image_vdis


def test_rescued_survives_a_new_driver(
    driver: XenAPIDriver, server: XapiTestServer, make_driver: DriverFactory
) -> None:
    spec = image_spec(server)
    driver.spawn(HOST, spec)
    driver.rescue(HOST, spec.uuid, None)
    successor = make_driver(server.url)  # a worker restarted, or taking the host over
    assert successor.get_info(HOST, spec.uuid).power_state == "rescued"
    assert successor.unrescue(HOST, spec.uuid).power_state == "running"


def test_boot_from_volume_needs_a_rescue_image(
    driver: XenAPIDriver, server: XapiTestServer
) -> None:
    iqn, portal = "iqn.2010-10.org.computed:boot", "198.51.100.9:3260"
    server.add_iscsi_lun(iqn, portal, 1, 2 * GiB)
    data = {"target_portal": portal, "target_iqn": iqn, "target_lun": 1}
    connection = VolumeConnection(volume_id="boot", driver_volume_type="iscsi", data=data)
    boot = BlockDevice(kind=DeviceKind.VOLUME, boot_index=0, connection_info=connection)
    spec = new_spec(block_devices=[boot])
    driver.spawn(HOST, spec)
    with pytest.raises(exception.InvalidRequest) as caught:
        driver.rescue(HOST, spec.uuid, None)
    assert caught.value.kwargs["operation"] == "rescue"
    assert driver.get_info(HOST, spec.uuid).power_state == "running"  # untouched


def test_missing_rescue_image_changes_nothing(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    spec = image_spec(server)
    driver.spawn(HOST, spec)
    with pytest.raises(exception.InvalidRequest, match="no image VDI named 'nowhere'"):
        driver.rescue(HOST, spec.uuid, "nowhere")
    assert driver.get_info(HOST, spec.uuid).power_state == "running"
    with pytest.raises(exception.InstanceNotFound):
        driver.rescue(HOST, str(uuidlib.uuid4()), None)


def test_failed_rescue_is_undone(driver: XenAPIDriver, server: XapiTestServer, xapi: Any) -> None:
    spec = image_spec(server)
    driver.spawn(HOST, spec)
    server.inject_failure("VM.start_on", ["HOST_NOT_ENOUGH_FREE_MEMORY", "1", "0"])
    with pytest.raises(exception.DriverError):
        driver.rescue(HOST, spec.uuid, None)
    assert xapi.VM.get_by_name_label(constants.rescue_name_label(spec.uuid)) == []
    assert driver.get_info(HOST, spec.uuid).power_state == "running"
    assert xapi.VM.get_blocked_operations(vm_of(xapi, spec.uuid)) == {}
