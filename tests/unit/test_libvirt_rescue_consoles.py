"""The libvirt driver's XML of contract 1.3: rescue definitions, consoles, image volume names."""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET

import pytest

from computed import exception

libvirt = pytest.importorskip("libvirt")

from drivers.libvirt import config, consoles, imageops, rescue  # noqa: E402
from drivers.libvirt.devices import DiskRecord  # noqa: E402

NS = "urn:computed:libvirt:instance:1.0"

ORIGINAL = f"""<domain type='kvm'>
  <name>computed-x</name>
  <metadata><computed:instance xmlns:computed='{NS}'><computed:name>vm</computed:name>
  </computed:instance></metadata>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='/pool/x-vda'/><target dev='vda' bus='virtio'/>
      <boot order='1'/><address type='pci' slot='0x04'/></disk>
    <disk type='file' device='disk'><source file='/pool/x-vdb'/><target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'><source file='/iso'/><target dev='hdc' bus='ide'/></disk>
    <interface type='network'><source network='default'/><boot order='2'/></interface>
    <serial type='pty'/>
  </devices>
</domain>"""


def test_a_rescue_boots_the_rescue_disk_with_the_root_disk_second() -> None:
    """And by boot orders: ``<os><boot dev='hd'/>`` (which they exclude) goes."""
    stored = config.StoredMetadata(name="vm", disks={"vda": DiskRecord("vda", "image")})
    text = rescue.definition(ET.fromstring(ORIGINAL), ORIGINAL, "/pool/x-rescue", stored)
    tree = ET.fromstring(text)
    disks = tree.findall("devices/disk")
    assert [(d.find("target").get("dev"), d.find("source").get("file")) for d in disks] == [
        ("vda", "/pool/x-rescue"),
        ("vdb", "/pool/x-vda"),  # the root disk, without its old address
    ]
    assert disks[0].find("boot").get("order") == "1"
    assert disks[1].find("boot") is None and disks[1].find("address") is None
    assert tree.find("devices/interface/boot") is None  # nothing else boots
    assert tree.find("devices/serial") is not None
    back = config.parse_metadata(ET.tostring(tree.find(f"metadata/{{{NS}}}instance"), "unicode"))
    assert back.rescue == ORIGINAL and back.name == "vm" and back.disks == stored.disks

    by_os = (
        ORIGINAL.replace("<type>hvm</type>", "<type>hvm</type><boot dev='hd'/>")
        .replace("<boot order='1'/>", "")
        .replace("<boot order='2'/>", "")
    )
    tree = ET.fromstring(rescue.definition(ET.fromstring(by_os), by_os, "/r", stored))
    assert tree.find("os/boot") is None
    assert [d.find("target").get("dev") for d in tree.findall("devices/disk")] == ["vda", "vdb"]
    assert tree.find("devices/disk[2]/source").get("file") == "/pool/x-vda"


def test_the_root_disk_is_the_first_boot_order_else_the_first_disk() -> None:
    ordered = ET.fromstring(
        "<domain><devices><disk><target dev='vda'/></disk>"
        "<disk><target dev='vdb'/><boot order='1'/></disk></devices></domain>"
    )
    assert rescue.root_disk(ordered).find("target").get("dev") == "vdb"
    by_os = ET.fromstring(
        "<domain><os><boot dev='hd'/></os><devices><disk><target dev='vdc'/></disk>"
        "<disk><target dev='vdd'/></disk></devices></domain>"
    )
    assert rescue.root_disk(by_os).find("target").get("dev") == "vdc"
    network_first = ET.fromstring(
        "<domain><devices><disk><target dev='vda'/><boot order='2'/></disk>"
        "<interface type='network'><boot order='1'/></interface></devices></domain>"
    )
    assert rescue.root_disk(network_first).find("target").get("dev") == "vda"
    booted_elsewhere = ET.fromstring(
        "<domain><devices><disk><target dev='vda'/></disk>"
        "<interface type='network'><boot order='1'/></interface></devices></domain>"
    )
    assert rescue.root_disk(booted_elsewhere) is None
    assert rescue.root_disk(ET.fromstring("<domain><devices/></domain>")) is None


def test_metadata_without_a_rescue_reads_as_not_rescued() -> None:
    stored = config.StoredMetadata(name="vm")
    assert config.parse_metadata(config.metadata_text(stored)).rescue is None
    rescued = config.StoredMetadata(name="vm", rescue="<domain/>")
    assert config.parse_metadata(config.metadata_text(rescued)) == rescued


def test_console_elements() -> None:
    pty = consoles.elements("127.0.0.1", None, "vnc")
    assert [(e.tag, e.get("type")) for e in pty] == [
        ("serial", "pty"),
        ("console", "pty"),
        ("graphics", "vnc"),
    ]
    assert pty[2].get("autoport") == "yes" and pty[2].find("listen").get("address") == "127.0.0.1"
    tcp = consoles.elements("0.0.0.0", 10001, "spice", 5901)
    assert tcp[0].find("source").attrib == {"mode": "bind", "host": "0.0.0.0", "service": "10001"}
    assert tcp[0].find("protocol").get("type") == "raw"
    assert (tcp[2].get("type"), tcp[2].get("port"), tcp[2].get("autoport")) == (
        "spice",
        "5901",
        "no",
    )
    assert [e.tag for e in consoles.elements("::1", None, "none")] == ["serial", "console"]


def test_ports_taken_and_free() -> None:
    domains = [
        ET.fromstring(
            "<domain><devices><serial type='tcp'><source service='10000'/></serial>"
            "<graphics type='vnc' port='5900'/><graphics type='spice' port='-1' tlsPort='5902'/>"
            "</devices></domain>"
        ),
        ET.fromstring("<domain><devices><serial type='pty'/></devices></domain>"),
    ]
    assert consoles.used_ports(domains) == {10000, 5900, 5902}
    assert consoles.free_port(10000, 10002, {10000, 10001}) == 10002
    assert consoles.free_port(10000, 10001, {10000, 10001}) is None
    assert consoles.port_range("") is None
    assert consoles.port_range("5900:5999") == (5900, 5999)
    with pytest.raises(exception.ConfigError):
        consoles.port_range("6000:5900")


LIVE = """<domain><devices>
  <serial type='pty'><source path='/dev/pts/7'/></serial>
  <graphics type='vnc' port='5907' listen='0.0.0.0' passwd='pw'><listen type='address'/></graphics>
</devices></domain>"""


def test_consoles_read_from_the_live_xml() -> None:
    uuid = str(uuidlib.uuid4())
    live = ET.fromstring(LIVE)
    serial = consoles.serial_console(uuid, "h1", live, lambda: "kvm1.example")
    assert (serial.kind, serial.protocol, serial.path, serial.host) == (
        "serial",
        "pty",
        "/dev/pts/7",
        None,
    )
    display = consoles.graphical_console(uuid, "h1", live, lambda: "kvm1.example")
    assert (display.protocol, display.host, display.port, display.token) == (
        "vnc",
        "kvm1.example",  # a wildcard listen: the hypervisor's name
        5907,
        "pw",
    )


@pytest.mark.parametrize(
    "xml",
    [
        "<domain><devices><serial type='pty'/><graphics type='vnc' port='-1'/></devices></domain>",
        "<domain><devices><serial type='file'><source path='/log'/></serial>"
        "<graphics type='rdp' port='3389'/></devices></domain>",
        "<domain/>",
    ],
)
def test_no_console_to_offer(xml: str) -> None:
    live = ET.fromstring(xml)
    for read in (consoles.serial_console, consoles.graphical_console):
        with pytest.raises(exception.UnsupportedOperation) as caught:
            read(str(uuidlib.uuid4()), "h1", live, lambda: "kvm1")
        assert caught.value.kwargs["host"] == "h1"


def test_image_volume_names_fit_a_file_name_and_differ() -> None:
    uuid = str(uuidlib.uuid4())
    assert imageops.volume_name(uuid, "nightly") == f"snapshot-{uuid}-nightly"
    long_a, long_b = "é" * 200 + "a", "é" * 200 + "b"
    names = {imageops.volume_name(uuid, name) for name in (long_a, long_b)}
    assert len(names) == 2
    assert all(len(name.encode()) <= 255 for name in names)
    assert imageops.volume_name(uuid, long_a) == imageops.volume_name(uuid, long_a)
