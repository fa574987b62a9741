"""Device XML of the libvirt driver: names, volume types, interfaces, read back."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from computed import exception
from computed.objects import NetworkInterface, VolumeConnection
from drivers.libvirt import devices


def volume(kind: str, **data: Any) -> VolumeConnection:
    return VolumeConnection(volume_id="vol-1", driver_volume_type=kind, data=data)


def element(connection: VolumeConnection, secret: str | None = None) -> ET.Element:
    return devices.volume_element(
        "attach_volume", "h1", connection, "vdb", None, nfs_base="/mnt", secret=secret
    )


def test_disk_names_run_like_libvirt_s() -> None:
    assert [devices.disk_name(i) for i in (0, 1, 25, 26, 27, 51, 52)] == [
        "vda",
        "vdb",
        "vdz",
        "vdaa",
        "vdab",
        "vdaz",
        "vdba",
    ]
    assert devices.free_disk_name({"vda", "vdc"}) == "vdb"


@pytest.mark.parametrize(
    ("asked", "name"), [("vdb", "vdb"), ("/dev/sdc", "vdc"), ("xvdd", "vdd"), ("hdaa", "vdaa")]
)
def test_requested_names_become_virtio_names(asked: str, name: str) -> None:
    assert devices.target_name("attach_volume", asked) == name


@pytest.mark.parametrize("asked", ["vdb1", "nvme0n1", "/dev/loop0"])
def test_names_without_drive_letters_are_refused(asked: str) -> None:
    with pytest.raises(exception.InvalidRequest, match="names disks vdX"):
        devices.target_name("attach_volume", asked)


def test_file_and_block_volumes() -> None:
    disk = element(volume("file", device_path="/srv/v.img", format="qcow2"))
    assert (disk.get("type"), disk.find("source").get("file")) == ("file", "/srv/v.img")
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.findtext("serial") == "vol-1"
    assert disk.find("target").attrib == {"dev": "vdb", "bus": "virtio"}
    block = element(volume("file", device_path="/dev/mapper/v"))
    assert (block.get("type"), block.find("source").get("dev")) == ("block", "/dev/mapper/v")


def test_iscsi_portals_and_chap() -> None:
    disk = element(
        volume(
            "iscsi",
            target_iqn="iqn.a:b",
            target_portal="[2001:db8::1]:3261",
            target_lun=2,
            auth_method="CHAP",
            auth_username="u",
            auth_password="p",
        ),
        secret="computed:x:vol-1",
    )
    source = disk.find("source")
    assert source.attrib == {"protocol": "iscsi", "name": "iqn.a:b/2"}
    assert source.find("host").attrib == {"name": "2001:db8::1", "port": "3261"}
    assert disk.find("auth/secret").attrib == {"type": "iscsi", "usage": "computed:x:vol-1"}
    assert "p" not in ET.tostring(disk, encoding="unicode").split('"')  # no password in the XML


def test_nfs_follows_the_mount_point_convention() -> None:
    disk = element(volume("nfs", export="srv:/exp", name="volume-1"))
    digest = hashlib.md5(b"srv:/exp").hexdigest()
    assert disk.find("source").get("file") == f"/mnt/{digest}/volume-1"


@pytest.mark.parametrize(
    ("connection", "error"),
    [
        (volume("fibre_channel"), exception.UnsupportedOperation),
        (volume("iscsi", target_iqn="iqn.a:b"), exception.InvalidRequest),
        (
            volume("iscsi", target_iqn="i", target_portal="h", target_lun=-1),
            exception.InvalidRequest,
        ),
        (volume("rbd", name="p/v", hosts="h"), exception.InvalidRequest),
        (volume("file", device_path="relative"), exception.InvalidRequest),
        (volume("file", device_path="/v", format="vmdk"), exception.InvalidRequest),
    ],
)
def test_volumes_the_driver_cannot_build(connection: VolumeConnection, error: Any) -> None:
    with pytest.raises(error):
        element(connection)


def test_interfaces_and_reading_back() -> None:
    vif = NetworkInterface(port_id="p-1", mac_address="52:54:00:AB:00:01", network="br0", mtu=1400)
    vif.validate("test")
    domain = ET.Element("domain")
    container = ET.SubElement(domain, "devices")
    container.append(devices.interface_element(vif, libvirt_network=False))
    container.append(element(volume("file", device_path="/v")))
    [found] = devices.read_interfaces(domain)
    assert found.to_dict() == {
        "port_id": "p-1",
        "mac_address": "52:54:00:ab:00:01",
        "network": "br0",
        "mtu": 1400,
        "device_name": "tapp-1",
    }
    assert devices.find_interface(domain, "p-1") is not None
    assert devices.macs(domain) == {"52:54:00:ab:00:01"}
    [disk] = devices.read_disks(domain, {"vol-1": devices.DiskRecord("vol-1", "volume", 4)})
    assert (disk.kind, disk.volume_id, disk.size_gb, disk.device_name) == (
        "volume",
        "vol-1",
        4,
        "vdb",
    )
    assert devices.target_names(domain) == {"vdb"}


@pytest.mark.parametrize("bad", ["a b", "a/b", "-x", "ä"])
def test_ids_libvirt_cannot_carry(bad: str) -> None:
    with pytest.raises(exception.InvalidRequest):
        devices.check_id("attach_volume", "volume id", bad)
