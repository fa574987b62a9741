"""The XenAPI driver's disks, volumes and interfaces (contract 1.2), over real XML-RPC.

Volumes are LUNs of an iSCSI target (or VDI files of an NFS export) that the
test server's storage backend holds; the driver introduces their SRs as
nova's XenAPI driver did. An observer's own session checks the pool.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

import pytest

from computed import exception
from computed.objects import BlockDevice, NetworkInterface, VolumeConnection
from tests.functional._drivers import new_spec
from tests.functional.xenapi.conftest import HOST, XAPI_HOST
from tests.xapiserver import XapiTestServer

XenAPI = pytest.importorskip("XenAPI")

from drivers.xenapi import constants  # noqa: E402
from drivers.xenapi.driver import XenAPIDriver  # noqa: E402

pytestmark = pytest.mark.xenapi

GiB = 1024**3
IMAGE = "cirros-0.6.2"
IQN = "iqn.2010-10.org.openstack:volumes"
PORTAL = "198.51.100.7:3260"
MAC = "fa:16:3e:11:22:33"
NETWORK = "Pool-wide network associated with eth0"


def vm_of(xapi: Any, uuid: str) -> str:
    (vm,) = xapi.VM.get_by_name_label(constants.name_label(uuid))
    return str(vm)


def add_image(xapi: Any, size: int = GiB) -> str:
    sr = xapi.pool.get_default_SR(xapi.pool.get_all()[0])
    record = {
        "name_label": IMAGE,
        "name_description": "",
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
    }
    return str(xapi.VDI.create(record))


def iscsi(server: XapiTestServer, lun: int, size_gb: int = 1) -> VolumeConnection:
    server.add_iscsi_lun(IQN, PORTAL, lun, size_gb * GiB)
    data = {"target_portal": PORTAL, "target_iqn": IQN, "target_lun": lun}
    return volume(f"vol-{lun}", "iscsi", data)


def volume(volume_id: str, kind: str, data: dict[str, Any]) -> VolumeConnection:
    """Connection info as the worker hands it to the driver: validated."""
    connection = VolumeConnection(volume_id=volume_id, driver_volume_type=kind, data=data)
    connection.validate("attach_volume")
    return connection


def volume_srs(xapi: Any) -> list[str]:
    return [ref for ref, sr in xapi.SR.get_all_records().items() if sr["type"] == "iscsi"]


def vbd_of(xapi: Any, vm: str, userdevice: str) -> dict[str, Any]:
    for vbd in xapi.VM.get_VBDs(vm):
        record = xapi.VBD.get_record(vbd)
        if record["userdevice"] == userdevice:
            return dict(record)
    raise AssertionError(f"no VBD at {userdevice}")


def port(port_id: str = "port-1", mac: str = MAC, network: str = NETWORK) -> NetworkInterface:
    """An interface as the worker hands it to the driver: validated."""
    vif = NetworkInterface(port_id=port_id, mac_address=mac, network=network)
    vif.validate("attach_interface")
    return vif


# Spawn -----------------------------------------------------------------------


def test_spawn_builds_every_device(driver: XenAPIDriver, server: XapiTestServer, xapi: Any) -> None:
    image = add_image(xapi)
    spec = new_spec(
        "full",
        block_devices=[
            BlockDevice(kind="image", image=IMAGE, size_gb=10, boot_index=0),
            BlockDevice(kind="blank", size_gb=2, device_name="vdc"),
            BlockDevice(kind="volume", connection_info=iscsi(server, 1)),
        ],
        network_interfaces=[port(), port("port-2", "fa:16:3e:00:00:02")],
    )
    info = driver.spawn(HOST, spec)
    assert [(d.device_name, d.kind, d.size_gb, d.boot_index) for d in info.block_devices] == [
        ("xvda", "image", 10, 0),
        ("xvdb", "volume", 1, None),
        ("xvdc", "blank", 2, None),
    ]
    assert (info.block_devices[0].image, info.block_devices[1].volume_id) == (IMAGE, "vol-1")
    assert [
        (i.port_id, i.mac_address, i.network, i.device_name) for i in info.network_interfaces
    ] == [
        ("port-1", MAC, NETWORK, "0"),
        ("port-2", "fa:16:3e:00:00:02", NETWORK, "1"),
    ]
    vm = vm_of(xapi, spec.uuid)
    root = vbd_of(xapi, vm, "0")
    assert root["currently_attached"] and root["bootable"]
    assert xapi.VDI.get_virtual_size(root["VDI"]) == str(10 * GiB)
    assert root["VDI"] != image and xapi.VDI.get_virtual_size(image) == str(GiB)  # a clone
    assert xapi.VDI.get_type(vbd_of(xapi, vm, "2")["VDI"]) == "ephemeral"
    assert vbd_of(xapi, vm, "1")["other_config"][constants.OSVOL] == "True"
    assert "disks" not in xapi.VM.get_other_config(vm)  # no template disk besides
    assert len(xapi.VM.get_VBDs(vm)) == 3
    assert all(xapi.VIF.get_currently_attached(v) for v in xapi.VM.get_VIFs(vm))
    assert driver.get_info(HOST, spec.uuid).block_devices == info.block_devices


def test_destroy_keeps_the_volume_and_the_image(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    image = add_image(xapi)
    vdis_before = set(xapi.VDI.get_all())
    spec = new_spec(
        block_devices=[
            BlockDevice(kind="image", image=IMAGE, size_gb=2, boot_index=0),
            BlockDevice(kind="blank", size_gb=1),
            BlockDevice(kind="volume", connection_info=iscsi(server, 3)),
        ]
    )
    driver.spawn(HOST, spec)
    driver.destroy(HOST, spec.uuid)
    assert set(xapi.VDI.get_all()) == vdis_before  # root and ephemeral gone, image kept
    assert volume_srs(xapi) == []  # the volume's SR forgotten, its LUN untouched
    assert "3" in server.pool().backends.targets[IQN].luns
    assert xapi.VDI.get_name_label(image) == IMAGE
    driver.spawn(HOST, spec)  # the volume attaches again


def test_boot_from_volume(driver: XenAPIDriver, server: XapiTestServer, xapi: Any) -> None:
    boot = BlockDevice(kind="volume", boot_index=0, connection_info=iscsi(server, 5, 4))
    info = driver.spawn(HOST, new_spec(block_devices=[boot]))
    ((name, kind, boot_index, volume_id),) = [
        (d.device_name, d.kind, d.boot_index, d.volume_id) for d in info.block_devices
    ]
    assert (name, kind, boot_index, volume_id) == ("xvda", "volume", 0, "vol-5")
    assert info.disk_gb == 0 and info.power_state == "running"
    with pytest.raises(exception.InvalidRequest, match="vol-5 is the boot volume"):
        driver.detach_volume(HOST, info.uuid, "vol-5")
    assert driver.get_info(HOST, info.uuid).volume("vol-5") is not None


def test_a_spawn_that_cannot_build_its_disks_leaves_nothing(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    vdis_before = set(xapi.VDI.get_all())
    missing = new_spec(
        block_devices=[BlockDevice(kind="image", image="nope", size_gb=1, boot_index=0)]
    )
    with pytest.raises(exception.InvalidRequest, match="no image VDI named 'nope'"):
        driver.spawn(HOST, missing)
    add_image(xapi, size=4 * GiB)
    small = new_spec(
        block_devices=[BlockDevice(kind="image", image=IMAGE, size_gb=2, boot_index=0)]
    )
    with pytest.raises(exception.InvalidRequest, match="4 GiB, more than the root disk's 2 GiB"):
        driver.spawn(HOST, small)
    bad_volume = volume("vol-x", "iscsi", {"target_portal": PORTAL, "target_iqn": "iqn.x"})
    server.add_iscsi_lun(IQN, PORTAL, 0, GiB)  # the portal answers, but not for iqn.x
    failing = new_spec(
        block_devices=[
            BlockDevice(kind="image", image=IMAGE, size_gb=4, boot_index=0),
            BlockDevice(kind="volume", connection_info=bad_volume),
        ]
    )
    with pytest.raises(exception.DriverError) as caught:
        driver.spawn(HOST, failing)
    assert caught.value.kwargs["error_code"] == "SR_BACKEND_FAILURE_68"
    assert driver.list_instances(HOST) == []
    assert len(set(xapi.VDI.get_all()) - vdis_before) == 1  # the image only
    assert volume_srs(xapi) == []


# Volumes ---------------------------------------------------------------------


def test_volume_hotplug_on_a_running_instance(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    connection = iscsi(server, 1, 3)
    info = driver.attach_volume(HOST, spec.uuid, connection, "/dev/vdc")
    volume = info.volume("vol-1")
    assert volume is not None and (volume.device_name, volume.size_gb) == ("xvdc", 3)
    vbd = vbd_of(xapi, vm_of(xapi, spec.uuid), "2")
    assert vbd["currently_attached"] and vbd["device"] == "xvdc"
    again = driver.attach_volume(HOST, spec.uuid, connection, "vdd")  # attached: unchanged
    assert again.block_devices == info.block_devices
    detached = driver.detach_volume(HOST, spec.uuid, "vol-1")
    assert detached.volume("vol-1") is None
    assert volume_srs(xapi) == []
    assert driver.detach_volume(HOST, spec.uuid, "vol-1").block_devices == detached.block_devices


def test_volume_attached_to_a_stopped_instance_is_plugged_at_start(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    info = driver.attach_volume(HOST, spec.uuid, iscsi(server, 2), None)
    assert info.volume("vol-2").device_name == "xvdb"  # the first free slot
    vm = vm_of(xapi, spec.uuid)
    assert vbd_of(xapi, vm, "1")["currently_attached"] is False
    driver.power_on(HOST, spec.uuid)
    assert vbd_of(xapi, vm, "1")["currently_attached"] is True


def test_volume_refusals(driver: XenAPIDriver, server: XapiTestServer, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    connection = iscsi(server, 1)
    with pytest.raises(exception.DeviceConflict) as taken:
        driver.attach_volume(HOST, spec.uuid, connection, "vda")  # the root disk's slot
    assert taken.value.kwargs["device"] == "vda"
    with pytest.raises(exception.InvalidRequest, match="names no XenAPI disk slot"):
        driver.attach_volume(HOST, spec.uuid, connection, "vdz")
    rbd = volume("r", "rbd", {"name": "pool/r"})
    with pytest.raises(exception.UnsupportedOperation, match="rbd volumes"):
        driver.attach_volume(HOST, spec.uuid, rbd, None)
    lacking = volume("l", "iscsi", {"target_iqn": IQN})
    with pytest.raises(exception.InvalidRequest, match="lacks target_portal"):
        driver.attach_volume(HOST, spec.uuid, lacking, None)
    driver.pause(HOST, spec.uuid)
    with pytest.raises(exception.InvalidPowerState) as paused:
        driver.attach_volume(HOST, spec.uuid, connection, None)
    assert paused.value.kwargs == {
        "uuid": spec.uuid,
        "operation": "attach_volume",
        "state": "paused",
        "allowed": "running, stopped",
    }
    with pytest.raises(exception.InstanceNotFound):
        driver.attach_volume(HOST, str(uuidlib.uuid4()), connection, None)
    assert volume_srs(xapi) == []


def test_a_repeated_device_operation_succeeds_in_any_state(
    driver: XenAPIDriver, server: XapiTestServer
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    connection, vif = iscsi(server, 1), port()
    driver.attach_volume(HOST, spec.uuid, connection, None)
    driver.attach_interface(HOST, spec.uuid, vif)
    driver.suspend(HOST, spec.uuid)
    assert driver.attach_volume(HOST, spec.uuid, connection, "vdc").volume("vol-1")
    assert driver.extend_volume(HOST, spec.uuid, "vol-1", 1).volume("vol-1").size_gb == 1
    assert driver.attach_interface(HOST, spec.uuid, vif).interface("port-1")
    assert driver.detach_volume(HOST, spec.uuid, "vol-2").volume("vol-2") is None
    assert driver.detach_interface(HOST, spec.uuid, "port-2").interface("port-2") is None
    with pytest.raises(exception.InvalidPowerState):
        driver.detach_volume(HOST, spec.uuid, "vol-1")
    with pytest.raises(exception.InvalidPowerState):
        driver.detach_interface(HOST, spec.uuid, "port-1")


def test_a_volume_in_use_elsewhere_is_a_conflict(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    one, two = new_spec("one"), new_spec("two")
    driver.spawn(HOST, one)
    driver.spawn(HOST, two)
    connection = iscsi(server, 1)
    driver.attach_volume(HOST, one.uuid, connection, None)
    with pytest.raises(exception.DeviceConflict) as caught:
        driver.attach_volume(HOST, two.uuid, connection, None)
    assert caught.value.kwargs["uuid"] == two.uuid
    assert driver.get_info(HOST, two.uuid).volume("vol-1") is None  # its VBD undone
    assert len(volume_srs(xapi)) == 1  # still used by the first


def test_extend_volume_rescans_its_sr(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    with pytest.raises(exception.DeviceNotFound) as missing:
        driver.extend_volume(HOST, spec.uuid, "vol-1", 2)
    assert missing.value.kwargs == {"device": "volume vol-1", "uuid": spec.uuid, "host": HOST}
    driver.attach_volume(HOST, spec.uuid, iscsi(server, 1, 1), None)
    with pytest.raises(exception.DriverError, match="still 1 GiB after a rescan"):
        driver.extend_volume(HOST, spec.uuid, "vol-1", 2)  # the storage has not grown it
    server.resize_iscsi_lun(IQN, 1, 2 * GiB)
    assert driver.extend_volume(HOST, spec.uuid, "vol-1", 2).volume("vol-1").size_gb == 2
    assert driver.extend_volume(HOST, spec.uuid, "vol-1", 2).volume("vol-1").size_gb == 2
    with pytest.raises(exception.InvalidRequest, match="more than 1 GiB"):
        driver.extend_volume(HOST, spec.uuid, "vol-1", 1)


def test_nfs_volume(driver: XenAPIDriver, server: XapiTestServer) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    vdi_uuid = str(uuidlib.uuid4())
    server.add_nfs_vdi("nfs.example.org", "/vols", vdi_uuid, 5 * GiB)
    data = {"export": "nfs.example.org:/vols", "vdi_uuid": vdi_uuid}
    nfs = volume("n1", "nfs", data)
    assert driver.attach_volume(HOST, spec.uuid, nfs, None).volume("n1").size_gb == 5
    cinder_style = volume("n2", "nfs", {"export": "nfs.example.org:/vols"})
    with pytest.raises(exception.InvalidRequest, match="lacks vdi_uuid"):
        driver.attach_volume(HOST, spec.uuid, cinder_style, None)


def test_volume_connector(driver: XenAPIDriver, xapi: Any) -> None:
    host = xapi.host.get_by_name_label(XAPI_HOST)[0]
    connector = driver.get_volume_connector(HOST)
    assert connector.initiator == xapi.host.get_iscsi_iqn(host)
    assert (connector.ip, connector.host) == (xapi.host.get_address(host), HOST)
    xapi.host.set_iscsi_iqn(host, "")  # an older host keeps it only in other_config
    assert driver.get_volume_connector(HOST).initiator is None


# Interfaces ------------------------------------------------------------------


def test_interface_hotplug(driver: XenAPIDriver, xapi: Any) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    info = driver.attach_interface(HOST, spec.uuid, port())
    assert [(i.port_id, i.device_name, i.mtu) for i in info.network_interfaces] == [
        ("port-1", "0", 1500)
    ]
    (vif,) = xapi.VM.get_VIFs(vm_of(xapi, spec.uuid))
    assert xapi.VIF.get_currently_attached(vif) is True
    assert xapi.VIF.get_other_config(vif)[constants.OTHER_CONFIG_PORT_ID] == "port-1"
    assert driver.attach_interface(HOST, spec.uuid, port()).network_interfaces == (
        info.network_interfaces
    )
    with pytest.raises(exception.DeviceConflict, match=f"MAC address {MAC} is taken"):
        driver.attach_interface(HOST, spec.uuid, port("port-2"))
    with pytest.raises(exception.InvalidRequest, match="no network named"):
        driver.attach_interface(HOST, spec.uuid, port("port-3", "fa:16:3e:00:00:03", "nowhere"))
    bridged = driver.attach_interface(
        HOST, spec.uuid, port("port-4", "fa:16:3e:00:00:04", "xenbr0")
    )
    assert bridged.interface("port-4").network == "xenbr0"
    assert driver.detach_interface(HOST, spec.uuid, "port-1").interface("port-1") is None
    assert driver.detach_interface(HOST, spec.uuid, "port-1").interface("port-1") is None
    assert len(xapi.VM.get_VIFs(vm_of(xapi, spec.uuid))) == 1


def test_interface_of_a_stopped_instance_is_plugged_at_start(
    driver: XenAPIDriver, xapi: Any
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    net = xapi.network.create(
        {"name_label": "tenant", "name_description": "", "other_config": {}, "MTU": "9000"}
    )
    info = driver.attach_interface(HOST, spec.uuid, port(network="tenant"))
    assert info.interface("port-1").mtu == 9000  # the network's, none being asked
    (vif,) = xapi.network.get_VIFs(net)
    assert xapi.VIF.get_currently_attached(vif) is False
    driver.power_on(HOST, spec.uuid)
    assert xapi.VIF.get_currently_attached(vif) is True
    driver.suspend(HOST, spec.uuid)
    with pytest.raises(exception.InvalidPowerState):
        driver.detach_interface(HOST, spec.uuid, "port-1")


def test_xapi_device_errors_map_onto_the_projects(
    driver: XenAPIDriver, server: XapiTestServer, xapi: Any
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    server.inject_failure("VIF.create", ["MAC_INVALID", MAC])
    with pytest.raises(exception.InvalidRequest, match="MAC_INVALID"):
        driver.attach_interface(HOST, spec.uuid, port())
    vm = vm_of(xapi, spec.uuid)
    server.inject_failure("VIF.plug", ["VM_BAD_POWER_STATE", vm, "running", "paused"])
    with pytest.raises(exception.InvalidPowerState) as caught:
        driver.attach_interface(HOST, spec.uuid, port())
    assert caught.value.kwargs["state"] == "paused"
    assert xapi.VM.get_VIFs(vm) == []  # the VIF undone
    server.inject_failure("VBD.create", ["DEVICE_ALREADY_EXISTS", "1"])
    with pytest.raises(exception.DeviceConflict):
        driver.attach_volume(HOST, spec.uuid, iscsi(server, 1), None)
    assert volume_srs(xapi) == []
