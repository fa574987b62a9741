"""Devices (contract 1.2) with the libvirt driver against a real libvirtd's test driver.

The test driver keeps whatever domain XML it is given (serials, user
aliases, boot orders) and has storage pools, so spawning with devices is
checked in full here. It has no secrets (so no iSCSI CHAP password) and no
device hot-plug at all (``attachDeviceFlags`` is unsupported): a stopped
domain is changed by defining its edited XML again, a running one is
refused. Secrets, hot-plug into a running domain and a guest seeing it are
in ``test_libvirt_guest.py``, under qemu.
"""

from __future__ import annotations

import os
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from computed import exception
from computed.objects import (
    BlockDevice,
    InstanceInfo,
    NetworkInterface,
    PowerState,
    VolumeConnection,
)
from computed.testing.libvirtd import Libvirtd
from tests.functional._drivers import new_spec

libvirt = pytest.importorskip("libvirt")

from drivers.libvirt import deviceops, devices  # noqa: E402
from drivers.libvirt.driver import LibvirtDriver  # noqa: E402

from .conftest import HOST, DriverFactory  # noqa: E402

pytestmark = pytest.mark.libvirt

POOL = "default-pool"  # the test driver's built-in pool, at /default-pool
IMAGE = "debian-12"
GIB = 1024**3


@pytest.fixture
def pool(virt: Any) -> Iterator[Any]:
    """The test node's pool holding a 1 GiB image; emptied afterwards."""
    pool = virt.storagePoolLookupByName(POOL)
    pool.createXML(
        f"<volume><name>{IMAGE}</name><capacity unit='bytes'>{GIB}</capacity></volume>", 0
    )
    yield pool
    for vol in pool.listAllVolumes(0):
        vol.delete(0)


@pytest.fixture
def pooled(daemon: Libvirtd, virt: Any, pool: Any, make_driver: DriverFactory) -> LibvirtDriver:
    """A driver making its disks in the test node's pool."""
    return make_driver(daemon.uri_for(), storage_pool=POOL, nfs_mount_point_base="/mnt/nfs")


def volume(volume_id: str, kind: str = "file", **data: Any) -> VolumeConnection:
    if kind == "file" and not data:
        data = {"device_path": f"/srv/volumes/{volume_id}"}
    connection = VolumeConnection(volume_id=volume_id, driver_volume_type=kind, data=data)
    connection.validate("test")
    return connection


def port(port_id: str, mac: str, network: str = "default", mtu: int | None = None) -> Any:
    vif = NetworkInterface(port_id=port_id, mac_address=mac, network=network, mtu=mtu)
    vif.validate("test")
    return vif


def dom_xml(virt: Any, uuid: str) -> ET.Element:
    return ET.fromstring(virt.lookupByUUIDString(uuid).XMLDesc(0))


def disk(xml: ET.Element, target: str) -> ET.Element:
    found = xml.find(f"devices/disk/target[@dev='{target}']/..")
    assert found is not None, f"no disk {target}"
    return found


def reported(info: InstanceInfo) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    disks = [
        {k: v for k, v in d.to_dict().items() if v is not None and k != "connection_info"}
        for d in info.block_devices
    ]
    return disks, [i.to_dict() for i in info.network_interfaces]


# Spawn -------------------------------------------------------------------------------


def test_spawn_builds_every_device(pooled: LibvirtDriver, virt: Any, pool: Any) -> None:
    spec = new_spec(
        "full",
        block_devices=[
            BlockDevice(kind="image", image=IMAGE, size_gb=2, boot_index=0),
            BlockDevice(kind="blank", size_gb=1, device_name="/dev/sdc"),
            BlockDevice(kind="volume", connection_info=volume("vol-file")),
            BlockDevice(
                kind="volume",
                size_gb=10,
                connection_info=volume(
                    "vol-iscsi",
                    "iscsi",
                    target_iqn="iqn.2010-10.org.openstack:volume-1",
                    target_portal="192.0.2.10:3260",
                    target_lun=1,
                ),
            ),
            BlockDevice(
                kind="volume",
                connection_info=volume(
                    "vol-rbd",
                    "rbd",
                    name="volumes/volume-2",
                    hosts=["192.0.2.21", "192.0.2.22"],
                    ports=["6789", "6790"],
                    auth_enabled=True,
                    auth_username="cinder",
                    secret_uuid="5a4d8e62-6a86-4c55-a1a0-2f6c7c2c9a11",
                ),
            ),
            BlockDevice(
                kind="volume",
                connection_info=volume("vol-nfs", "nfs", export="192.0.2.30:/exports", name="v3"),
            ),
        ],
        network_interfaces=[
            port("port-net", "52:54:00:aa:00:01", "default", mtu=1450),
            port("port-br", "52:54:00:aa:00:02", "eth1"),
        ],
    )
    info = pooled.spawn(HOST, spec)

    disks, interfaces = reported(info)
    assert disks == [  # libvirt keeps disks in the order of their names
        {"kind": "image", "device_name": "vda", "boot_index": 0, "size_gb": 2, "image": IMAGE},
        {"kind": "volume", "device_name": "vdb", "volume_id": "vol-file"},
        {"kind": "blank", "device_name": "vdc", "size_gb": 1},
        {"kind": "volume", "device_name": "vdd", "size_gb": 10, "volume_id": "vol-iscsi"},
        {"kind": "volume", "device_name": "vde", "volume_id": "vol-rbd"},
        {"kind": "volume", "device_name": "vdf", "volume_id": "vol-nfs"},
    ]
    assert interfaces == [
        {
            "port_id": "port-net",
            "mac_address": "52:54:00:aa:00:01",
            "network": "default",
            "mtu": 1450,
            "device_name": "tapport-net",
        },
        {
            "port_id": "port-br",
            "mac_address": "52:54:00:aa:00:02",
            "network": "eth1",
            "mtu": None,
            "device_name": "tapport-br",
        },
    ]
    assert pooled.get_info(HOST, spec.uuid) == info  # read back the same way

    # What libvirtd holds.
    xml = dom_xml(virt, spec.uuid)
    root, blank = disk(xml, "vda"), disk(xml, "vdc")
    assert root.find("source").get("file") == f"/default-pool/{spec.uuid}-vda"
    assert root.find("boot").get("order") == "1" and xml.find("os/boot") is None
    assert pool.storageVolLookupByName(f"{spec.uuid}-vda").info()[1] == 2 * GIB
    assert blank.find("source").get("file") == f"/default-pool/{spec.uuid}-vdc"
    assert pool.storageVolLookupByName(f"{spec.uuid}-vdc").info()[1] == GIB
    assert disk(xml, "vdb").find("source").get("file") == "/srv/volumes/vol-file"
    iscsi = disk(xml, "vdd")
    assert iscsi.get("type") == "network" and iscsi.findtext("serial") == "vol-iscsi"
    source = iscsi.find("source")
    assert (source.get("protocol"), source.get("name")) == (
        "iscsi",
        "iqn.2010-10.org.openstack:volume-1/1",
    )
    assert source.find("host").attrib == {"name": "192.0.2.10", "port": "3260"}
    assert iscsi.find("auth") is None
    rbd = disk(xml, "vde").find("source")
    assert [h.attrib for h in rbd.findall("host")] == [
        {"name": "192.0.2.21", "port": "6789"},
        {"name": "192.0.2.22", "port": "6790"},
    ]
    assert disk(xml, "vde").find("auth/secret").get("type") == "ceph"
    nfs = devices.nfs_path("/mnt/nfs", "192.0.2.30:/exports", "v3")
    assert disk(xml, "vdf").find("source").get("file") == nfs
    assert nfs.startswith("/mnt/nfs/") and len(nfs.split("/")[3]) == 32  # md5 hex of the export
    net, bridge = xml.findall("devices/interface")
    assert (net.get("type"), net.find("source").get("network")) == ("network", "default")
    assert (bridge.get("type"), bridge.find("source").get("bridge")) == ("bridge", "eth1")
    assert net.find("model").get("type") == "virtio" and net.find("mtu").get("size") == "1450"
    assert net.find("alias").get("name") == "ua-port-net"

    pooled.destroy(HOST, spec.uuid)  # takes its disks along
    assert [v.name() for v in pool.listAllVolumes(0)] == [IMAGE]


def test_spawn_from_a_volume_boots_it(pooled: LibvirtDriver, virt: Any) -> None:
    spec = new_spec(
        "bfv", block_devices=[BlockDevice(kind="volume", boot_index=0, connection_info=volume("v"))]
    )
    info = pooled.spawn(HOST, spec)
    assert [(d.device_name, d.boot_index, d.volume_id) for d in info.block_devices] == [
        ("vda", 0, "v")
    ]
    xml = dom_xml(virt, spec.uuid)
    assert disk(xml, "vda").find("boot").get("order") == "1"
    for _ in ("running", "stopped"):
        with pytest.raises(exception.InvalidRequest, match="v is the boot volume"):
            pooled.detach_volume(HOST, spec.uuid, "v")
        pooled.power_off(HOST, spec.uuid)
    assert pooled.get_info(HOST, spec.uuid).volume("v") is not None


def test_an_old_spec_gets_its_root_disk_from_the_image(pooled: LibvirtDriver, pool: Any) -> None:
    spec = new_spec("old", image=IMAGE, disk_gb=3)
    info = pooled.spawn(HOST, spec)
    assert [(d.kind, d.device_name, d.size_gb) for d in info.block_devices] == [("image", "vda", 3)]
    assert pool.storageVolLookupByName(f"{spec.uuid}-vda").info()[1] == 3 * GIB


@pytest.mark.parametrize(
    ("device", "error", "match"),
    [
        (
            BlockDevice(
                kind="volume",
                connection_info=VolumeConnection(
                    volume_id="fc", driver_volume_type="fibre_channel", data={}
                ),
            ),
            exception.UnsupportedOperation,
            "spawn of a 'fibre_channel' volume",
        ),
        (
            BlockDevice(kind="volume", connection_info=volume("bad", "iscsi", target_iqn="x")),
            exception.InvalidRequest,
            "iscsi volume bad: data.target_portal",
        ),
        (
            BlockDevice(kind="volume", connection_info=volume("a b")),
            exception.InvalidRequest,
            "volume id of letters",
        ),
        (
            BlockDevice(kind="image", image="no-such-image", size_gb=1, boot_index=0),
            exception.InvalidRequest,
            "image 'no-such-image' is not a volume of storage pool",
        ),
        (
            BlockDevice(kind="image", image=IMAGE, size_gb=1, boot_index=0, device_name="vdb1"),
            exception.InvalidRequest,
            "names disks vdX",
        ),
    ],
)
def test_a_refused_spawn_leaves_nothing_behind(
    pooled: LibvirtDriver, virt: Any, pool: Any, device: Any, error: Any, match: str
) -> None:
    spec = new_spec(
        "doomed",
        block_devices=[
            BlockDevice(kind="blank", size_gb=1),
            BlockDevice(
                kind="volume",
                connection_info=volume(
                    "v6", "iscsi", target_iqn="iqn.x:y", target_portal="[2001:db8::1]:3260"
                ),
            ),
            device,
        ],
    )
    with pytest.raises(error, match=match):
        pooled.spawn(HOST, spec)
    with pytest.raises(libvirt.libvirtError):
        virt.lookupByUUIDString(spec.uuid)
    assert [v.name() for v in pool.listAllVolumes(0)] == [IMAGE]


def test_spawn_with_an_interface_on_no_network_is_refused(pooled: LibvirtDriver, virt: Any) -> None:
    spec = new_spec("lost", network_interfaces=[port("p", "52:54:00:00:00:09", "no-such-br")])
    with pytest.raises(exception.InvalidRequest, match="'no-such-br' is neither a libvirt network"):
        pooled.spawn(HOST, spec)
    with pytest.raises(libvirt.libvirtError):
        virt.lookupByUUIDString(spec.uuid)


def test_ephemeral_disks_need_a_storage_pool(driver: LibvirtDriver) -> None:
    spec = new_spec("eph", block_devices=[BlockDevice(kind="blank", size_gb=1)])
    with pytest.raises(exception.UnsupportedOperation, match="spawn.ephemeral_disks") as caught:
        driver.spawn(HOST, spec)
    assert caught.value.kwargs["detail"] == "ephemeral disks need [libvirt] storage_pool"


# Volumes -----------------------------------------------------------------------------


def stopped(driver: LibvirtDriver, **fields: Any) -> str:
    spec = new_spec("dev", **fields)
    driver.spawn(HOST, spec)
    driver.power_off(HOST, spec.uuid)
    return spec.uuid


def test_attach_and_detach_volumes_of_a_stopped_instance(pooled: LibvirtDriver, virt: Any) -> None:
    uuid = stopped(pooled, image=IMAGE, disk_gb=1)
    info = pooled.attach_volume(HOST, uuid, volume("v1"), None)
    assert [(d.device_name, d.volume_id) for d in info.block_devices] == [
        ("vda", None),
        ("vdb", "v1"),
    ]
    info = pooled.attach_volume(HOST, uuid, volume("v2"), "/dev/vdd")
    assert info.volume("v2").device_name == "vdd"
    assert disk(dom_xml(virt, uuid), "vdd").findtext("serial") == "v2"

    # Attached already: returned as it is, whatever the mountpoint.
    assert pooled.attach_volume(HOST, uuid, volume("v1"), "vdz") == info
    with pytest.raises(exception.DeviceConflict) as conflict:
        pooled.attach_volume(HOST, uuid, volume("v3"), "sdd")  # taken as vdd
    assert conflict.value.kwargs == {
        "device": "volume v3",
        "uuid": uuid,
        "host": HOST,
        "reason": "device name vdd is taken",
    }

    info = pooled.detach_volume(HOST, uuid, "v1")
    assert info.volume("v1") is None and info.volume("v2") is not None
    assert pooled.detach_volume(HOST, uuid, "v1") == info  # not attached: fine
    assert pooled.attach_volume(HOST, uuid, volume("v3"), None).volume("v3").device_name == "vdb"
    assert pooled.power_on(HOST, uuid).volume("v3").device_name == "vdb"  # kept across a start


def test_an_iscsi_password_needs_libvirt_secrets(pooled: LibvirtDriver, pool: Any) -> None:
    chap = volume(
        "secret-vol",
        "iscsi",
        target_iqn="iqn.x:y",
        target_portal="192.0.2.1",
        auth_method="CHAP",
        auth_username="u",
        auth_password="p",
    )
    spec = new_spec(
        "chap",
        block_devices=[
            BlockDevice(kind="image", image=IMAGE, size_gb=1, boot_index=0),
            BlockDevice(kind="volume", connection_info=chap),
        ],
    )
    with pytest.raises(exception.UnsupportedOperation) as caught:  # the test driver has none
        pooled.spawn(HOST, spec)
    assert caught.value.kwargs["detail"].endswith("virSecretDefineXML")
    assert [v.name() for v in pool.listAllVolumes(0)] == [IMAGE]
    uuid = stopped(pooled)
    with pytest.raises(exception.UnsupportedOperation):
        pooled.attach_volume(HOST, uuid, chap, None)
    assert pooled.get_info(HOST, uuid).block_devices == []


def test_extend_a_volume_of_a_stopped_instance(pooled: LibvirtDriver, virt: Any) -> None:
    uuid = stopped(
        pooled, block_devices=[BlockDevice(kind="volume", size_gb=5, connection_info=volume("v"))]
    )
    assert pooled.extend_volume(HOST, uuid, "v", 8).volume("v").size_gb == 8
    assert pooled.extend_volume(HOST, uuid, "v", 8).volume("v").size_gb == 8  # no-op
    with pytest.raises(exception.InvalidRequest, match="is 8 GiB; it cannot shrink to 7 GiB"):
        pooled.extend_volume(HOST, uuid, "v", 7)
    with pytest.raises(exception.DeviceNotFound) as missing:
        pooled.extend_volume(HOST, uuid, "w", 9)
    assert str(missing.value) == f"volume w is not attached to instance {uuid} on host {HOST}."
    # A volume attached later has no known size until it is extended.
    assert pooled.attach_volume(HOST, uuid, volume("w"), None).volume("w").size_gb is None
    assert pooled.extend_volume(HOST, uuid, "w", 2).volume("w").size_gb == 2
    assert pooled.detach_volume(HOST, uuid, "w").volume("w") is None
    assert pooled.attach_volume(HOST, uuid, volume("w"), None).volume("w").size_gb is None


def test_attach_of_an_unknown_volume_type_names_it(pooled: LibvirtDriver) -> None:
    uuid = stopped(pooled)
    fc = VolumeConnection(volume_id="fc", driver_volume_type="fibre_channel", data={})
    with pytest.raises(exception.UnsupportedOperation) as caught:
        pooled.attach_volume(HOST, uuid, fc, None)
    assert caught.value.kwargs["operation"] == "attach_volume of a 'fibre_channel' volume"
    assert caught.value.kwargs["detail"] == "volume types: file, iscsi, nfs, rbd"


def test_a_running_test_domain_cannot_hot_plug(pooled: LibvirtDriver) -> None:
    spec = new_spec(
        "hot", block_devices=[BlockDevice(kind="volume", size_gb=1, connection_info=volume("v"))]
    )
    pooled.spawn(HOST, spec)
    calls = {
        "attach_volume": lambda: pooled.attach_volume(HOST, spec.uuid, volume("w"), None),
        "detach_volume": lambda: pooled.detach_volume(HOST, spec.uuid, "v"),
        "extend_volume": lambda: pooled.extend_volume(HOST, spec.uuid, "v", 2),
        "attach_interface": lambda: pooled.attach_interface(
            HOST, spec.uuid, port("p", "52:54:00:00:00:01")
        ),
    }
    for operation, call in calls.items():
        with pytest.raises(exception.InvalidPowerState) as caught:  # stopped, it could
            call()
        assert {k: v for k, v in caught.value.kwargs.items() if k != "detail"} == {
            "uuid": spec.uuid,
            "operation": operation,
            "state": PowerState.RUNNING,
            "allowed": PowerState.STOPPED,
        }
        assert isinstance(caught.value.__cause__, libvirt.libvirtError)
        assert caught.value.__cause__.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT
    info = pooled.get_info(HOST, spec.uuid)  # nothing changed
    assert [(d.volume_id, d.size_gb) for d in info.block_devices] == [("v", 1)]
    assert info.network_interfaces == []


@pytest.mark.parametrize("state", [PowerState.PAUSED, PowerState.SUSPENDED])
def test_devices_change_only_when_running_or_stopped(pooled: LibvirtDriver, state: str) -> None:
    spec = new_spec("frozen")
    pooled.spawn(HOST, spec)
    (pooled.pause if state == PowerState.PAUSED else pooled.suspend)(HOST, spec.uuid)
    calls = {
        "attach_volume": lambda: pooled.attach_volume(HOST, spec.uuid, volume("v"), None),
        "detach_volume": lambda: pooled.detach_volume(HOST, spec.uuid, "v"),
        "extend_volume": lambda: pooled.extend_volume(HOST, spec.uuid, "v", 2),
        "attach_interface": lambda: pooled.attach_interface(
            HOST, spec.uuid, port("p", "52:54:00:00:00:01")
        ),
        "detach_interface": lambda: pooled.detach_interface(HOST, spec.uuid, "p"),
    }
    for operation, call in calls.items():
        with pytest.raises(exception.InvalidPowerState) as caught:
            call()
        assert caught.value.kwargs == {
            "uuid": spec.uuid,
            "operation": operation,
            "state": state,
            "allowed": "running, stopped",
        }


def test_device_operations_on_a_missing_instance(pooled: LibvirtDriver) -> None:
    missing = str(uuidlib.uuid4())
    with pytest.raises(exception.InstanceNotFound):
        pooled.attach_volume(HOST, missing, volume("v"), None)
    with pytest.raises(exception.InstanceNotFound):
        pooled.detach_interface(HOST, missing, "p")


# Interfaces --------------------------------------------------------------------------


def test_attach_and_detach_interfaces_of_a_stopped_instance(
    pooled: LibvirtDriver, virt: Any
) -> None:
    uuid = stopped(pooled, network_interfaces=[port("first", "52:54:00:00:00:01")])
    info = pooled.attach_interface(HOST, uuid, port("second", "52:54:00:00:00:02", "eth1", 9000))
    assert info.interface("second").to_dict() == {
        "port_id": "second",
        "mac_address": "52:54:00:00:00:02",
        "network": "eth1",
        "mtu": 9000,
        "device_name": "tapsecond",
    }
    assert pooled.attach_interface(HOST, uuid, port("second", "52:54:00:00:00:03")) == info
    with pytest.raises(exception.DeviceConflict, match="MAC address 52:54:00:00:00:01 is taken"):
        pooled.attach_interface(HOST, uuid, port("third", "52:54:00:00:00:01"))
    with pytest.raises(exception.InvalidRequest, match="'nowhere' is neither a libvirt network"):
        pooled.attach_interface(HOST, uuid, port("third", "52:54:00:00:00:04", "nowhere"))

    info = pooled.detach_interface(HOST, uuid, "first")
    assert [i.port_id for i in info.network_interfaces] == ["second"]
    assert pooled.detach_interface(HOST, uuid, "first") == info
    assert [i.find("alias").get("name") for i in dom_xml(virt, uuid).iter("interface")] == [
        "ua-second"
    ]


# The connector -----------------------------------------------------------------------


def test_volume_connector_of_a_local_host(pooled: LibvirtDriver, virt: Any) -> None:
    connector = pooled.get_volume_connector(HOST)
    expected_initiator = None
    if os.path.exists(deviceops.INITIATOR_FILE):
        expected_initiator = deviceops._local_initiator()
    assert (connector.host, connector.initiator) == (HOST, expected_initiator)
    assert connector.platform == virt.getInfo()[0]
    assert (connector.wwpns, connector.multipath) == ([], False)


def test_volume_connector_from_the_options(
    daemon: Libvirtd, virt: Any, make_driver: DriverFactory
) -> None:
    driver = make_driver(
        daemon.uri_for(),
        connector_ips={HOST: "192.0.2.7"},
        iscsi_initiators={HOST: "iqn.1993-08.org.debian:01:abc"},
    )
    connector = driver.get_volume_connector(HOST)
    assert (connector.host, connector.ip, connector.initiator) == (
        HOST,
        "192.0.2.7",
        "iqn.1993-08.org.debian:01:abc",
    )
