"""Domain XML for the libvirt driver: built from the spec, safe from its text, read back."""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from computed import exception
from computed.objects import InstanceSpec
from drivers.libvirt import config

NS = "urn:computed:libvirt:instance:1.0"


def spec(**fields: Any) -> InstanceSpec:
    fields.setdefault("uuid", str(uuidlib.uuid4()))
    fields.setdefault("name", "vm")
    fields.setdefault("vcpus", 2)
    fields.setdefault("memory_mb", 512)
    made = InstanceSpec(**fields)
    made.validate()
    return made


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def test_domain_carries_the_spec() -> None:
    s = spec(disk_gb=20, image="debian-12")
    dom = parse(config.domain_xml(s, "kvm"))
    assert dom.tag == "domain" and dom.get("type") == "kvm"
    assert dom.findtext("uuid") == s.uuid
    assert dom.findtext("name") == f"computed-{s.uuid}"
    assert dom.findtext("memory") == dom.findtext("currentMemory") == str(512 * 1024)
    assert dom.find("memory").get("unit") == "KiB"
    assert dom.findtext("vcpu") == "2"
    assert dom.findtext("os/type") == "hvm"
    assert dom.find("features/acpi") is not None  # or the guest never sees the power button
    stored = dom.find(f"metadata/{{{NS}}}instance")
    assert stored is not None
    assert stored.findtext(f"{{{NS}}}name") == "vm"
    assert stored.findtext(f"{{{NS}}}disk_gb") == "20"
    assert stored.findtext(f"{{{NS}}}image") == "debian-12"


def test_user_text_stays_text() -> None:
    evil = "x</name><devices><disk type='file'><source file='/etc/shadow'/></disk></devices>"
    s = spec(name=evil, metadata={"k'\"<": "v</item>&"})
    text = config.domain_xml(s, "qemu")
    dom = parse(text)
    assert dom.find("devices/disk") is None
    assert [child.tag for child in dom.find("devices")] == ["serial", "console"]
    back = config.parse_metadata(ET.tostring(dom.find(f"metadata/{{{NS}}}instance"), "unicode"))
    assert back.name == evil
    assert back.items == {"k'\"<": "v</item>&"}


@pytest.mark.parametrize("field", ["name", "image", "metadata value", "metadata key"])
def test_control_characters_are_refused(field: str) -> None:
    bad = "a\x01b"
    fields: dict[str, Any] = {
        "name": {"name": bad},
        "image": {"image": bad},
        "metadata value": {"metadata": {"k": bad}},
        "metadata key": {"metadata": {bad: "v"}},
    }[field]
    with pytest.raises(exception.InvalidRequest, match="control characters"):
        config.domain_xml(spec(**fields), "kvm")


def test_unicode_names_are_fine() -> None:
    s = spec(name="虚拟机 🚀 — tab\tnewline\n")
    dom = parse(config.domain_xml(s, "kvm"))
    assert dom.findtext(f"metadata/{{{NS}}}instance/{{{NS}}}name") == s.name


def test_direct_kernel_boot_hints() -> None:
    s = spec(
        metadata={
            config.BOOT_KERNEL: "/srv/vmlinuz",
            config.BOOT_INITRD: "/srv/initrd.img",
            config.BOOT_CMDLINE: "console=ttyS0 quiet",
        }
    )
    os_element = parse(config.domain_xml(s, "qemu")).find("os")
    assert os_element.findtext("kernel") == "/srv/vmlinuz"
    assert os_element.findtext("initrd") == "/srv/initrd.img"
    assert os_element.findtext("cmdline") == "console=ttyS0 quiet"
    assert os_element.find("boot") is None


def test_without_a_kernel_the_domain_boots_from_disk() -> None:
    os_element = parse(config.domain_xml(spec(), "kvm")).find("os")
    assert os_element.find("boot").get("dev") == "hd"
    assert os_element.find("kernel") is None


@pytest.mark.parametrize(
    "hints, message",
    [
        ({config.BOOT_KERNEL: "vmlinuz"}, "absolute path"),
        ({config.BOOT_INITRD: "../initrd"}, "absolute path"),
        ({config.BOOT_CMDLINE: "quiet"}, "needs"),
    ],
)
def test_bad_boot_hints_are_refused(hints: dict[str, str], message: str) -> None:
    with pytest.raises(exception.InvalidRequest, match=message):
        config.domain_xml(spec(metadata=hints), "kvm")


def test_metadata_round_trip_as_libvirt_returns_it() -> None:
    # virDomainGetMetadata hands the element back without its namespace
    text = (
        "<instance><name>web</name><disk_gb>12</disk_gb><image>img</image>"
        "<metadata><item key='a'>1</item></metadata></instance>"
    )
    stored = config.parse_metadata(text)
    assert stored == config.StoredMetadata(name="web", disk_gb=12, image="img", items={"a": "1"})


def test_metadata_that_is_not_ours_reads_as_defaults() -> None:
    stored = config.parse_metadata("<instance><disk_gb>lots</disk_gb></instance>")
    assert stored == config.StoredMetadata(name=None, disk_gb=0, image=None, items={})
