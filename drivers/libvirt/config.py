"""Domain XML for an :class:`~computed.objects.InstanceSpec`, and the metadata read back.

The XML is built with :mod:`xml.etree.ElementTree`, never by pasting user
input into text, so an instance name such as ``</name><devices>`` stays a
name. libvirt has no field for the instance's own name (its domain name is
derived from the UUID, see :func:`~drivers.libvirt.constants.domain_name`),
its disk size or its image: they live in a ``<metadata>`` element of the
driver's namespace, where :func:`parse_metadata` finds them again.

Direct kernel boot: three keys of ``InstanceSpec.metadata`` are read by this
driver as boot hints, for guests without a disk image:

* ``libvirt:kernel`` and ``libvirt:initrd``: absolute paths, on the
  hypervisor host, of a kernel and an initramfs to boot;
* ``libvirt:cmdline``: the kernel command line.

The devices (contract 1.2) are built by :mod:`~drivers.libvirt.devices` and
placed here; the metadata also keeps a :class:`~drivers.libvirt.devices.DiskRecord`
per disk, for what libvirt has no field for. When any disk has a boot order,
the domain boots by those orders instead of ``<boot dev='hd'/>``. The
consoles (contract 1.3) come from :mod:`~drivers.libvirt.consoles`.

While an instance is rescued (contract 1.3) the metadata also holds the
domain's own definition, which unrescue defines again: that it is there is
what makes the instance rescued, for any worker that looks. Moves (contract
1.4) keep there the id of the move under way, the definition before a
resize, and on a domain kept for a revert the UUID of its instance
(:mod:`~drivers.libvirt.migrationops`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from computed import exception
from computed.objects import InstanceSpec
from drivers.libvirt import constants
from drivers.libvirt.devices import DiskRecord

__all__ = [
    "BOOT_CMDLINE",
    "BOOT_INITRD",
    "BOOT_KERNEL",
    "StoredMetadata",
    "domain_xml",
    "metadata_element",
    "metadata_text",
    "parse_metadata",
]

BOOT_KERNEL = "libvirt:kernel"
BOOT_INITRD = "libvirt:initrd"
BOOT_CMDLINE = "libvirt:cmdline"

_NS = constants.METADATA_NS
ET.register_namespace(constants.METADATA_PREFIX, _NS)

# Characters XML 1.0 cannot carry at all, not even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class StoredMetadata:
    """What the driver keeps in a domain's metadata element."""

    name: str | None = None
    disk_gb: int = 0
    image: str | None = None
    items: dict[str, str] = field(default_factory=dict)
    #: By a local disk's device name or a volume's id.
    disks: dict[str, DiskRecord] = field(default_factory=dict)
    #: The domain's own definition (XML) while it is rescued, else None.
    rescue: str | None = None
    #: The id of the move (contract 1.4) that stopped this domain on its source,
    #: or built it on its destination; None once the move is over.
    migration: str | None = None
    #: The definition (XML) before a resize, kept for its revert until it is confirmed.
    previous: str | None = None
    #: On a domain kept for a revert of a move (not an instance): the
    #: instance's UUID. Such a domain is never listed.
    held: str | None = None

    def with_disk(self, record: DiskRecord) -> StoredMetadata:
        return replace(self, disks={**self.disks, record.key: record})

    def without_disk(self, key: str) -> StoredMetadata:
        return replace(self, disks={k: v for k, v in self.disks.items() if k != key})


def domain_xml(
    spec: InstanceSpec,
    domain_type: str,
    devices: Sequence[ET.Element] = (),
    disks: Sequence[DiskRecord] = (),
    consoles: Sequence[ET.Element] | None = None,
) -> str:
    """The persistent definition of ``spec`` as a ``domain_type`` domain.

    :param devices: the ``<disk>`` and ``<interface>`` elements to add.
    :param disks: what to remember of those disks.
    :param consoles: the ``<serial>``, ``<console>`` and ``<graphics>``
        elements; None for a serial console on a pseudo-terminal only.

    :raises computed.exception.InvalidRequest: if a text field holds characters
        XML cannot carry, or a boot hint is not an absolute path.
    """
    _check_text(spec)
    domain = ET.Element("domain", type=domain_type)
    ET.SubElement(domain, "name").text = constants.domain_name(spec.uuid)
    ET.SubElement(domain, "uuid").text = spec.uuid
    wrapper = ET.SubElement(domain, "metadata")
    wrapper.append(_instance(_stored_of(spec, disks), _NS))
    memory_kib = str(spec.memory_mb * 1024)
    ET.SubElement(domain, "memory", unit="KiB").text = memory_kib
    ET.SubElement(domain, "currentMemory", unit="KiB").text = memory_kib
    ET.SubElement(domain, "vcpu", placement="static").text = str(spec.vcpus)
    domain.append(_os(spec, any(d.find("boot") is not None for d in devices)))
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")  # without it a guest never hears the power button
    ET.SubElement(features, "apic")
    ET.SubElement(domain, "clock", offset="utc")
    for event, action in (
        ("on_poweroff", "destroy"),
        ("on_reboot", "restart"),
        ("on_crash", "destroy"),
    ):
        ET.SubElement(domain, event).text = action
    element = ET.SubElement(domain, "devices")
    element.extend(devices)
    if consoles is None:
        ET.SubElement(element, "serial", type="pty")
        ET.SubElement(element, "console", type="pty")
    else:
        element.extend(consoles)
    return ET.tostring(domain, encoding="unicode")


def metadata_text(stored: StoredMetadata) -> str:
    """The metadata element for ``virDomain.setMetadata`` (which adds the namespace)."""
    return ET.tostring(_instance(stored, None), encoding="unicode")


def metadata_element(stored: StoredMetadata) -> ET.Element:
    """The metadata element in the driver's namespace, to place in a domain's XML."""
    return _instance(stored, _NS)


def parse_metadata(text: str) -> StoredMetadata:
    """Read back the element :func:`domain_xml` stored.

    :param text: the element as ``virDomain.metadata()`` returns it (libvirt
        drops its namespace on the way out) or with the namespace.
    """
    root = ET.fromstring(text)

    def find(tag: str) -> ET.Element | None:
        found = root.find(tag)
        return found if found is not None else root.find(f"{{{_NS}}}{tag}")

    name, disk, image, items = find("name"), find("disk_gb"), find("image"), find("metadata")
    rescue, migration, previous, held = (
        find("rescue"),
        find("migration"),
        find("previous"),
        find("held"),
    )
    stored_items: dict[str, str] = {}
    if items is not None:
        for item in items:
            stored_items[item.get("key", "")] = item.text or ""
    records: dict[str, DiskRecord] = {}
    disks = find("disks")
    for record in disks if disks is not None else ():
        key, size = record.get("key"), record.get("size_gb")
        if key:
            records[key] = DiskRecord(
                key=key,
                kind=record.get("kind", ""),
                size_gb=_int(size) if size is not None else None,
                image=record.get("image"),
            )
    return StoredMetadata(
        name=(name.text or "") if name is not None else None,
        disk_gb=_int(disk.text if disk is not None else None),
        image=image.text if image is not None else None,
        items=stored_items,
        disks=records,
        rescue=(rescue.text or "") if rescue is not None else None,
        migration=(migration.text or None) if migration is not None else None,
        previous=(previous.text or "") if previous is not None else None,
        held=(held.text or None) if held is not None else None,
    )


def _int(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


def _stored_of(spec: InstanceSpec, disks: Sequence[DiskRecord]) -> StoredMetadata:
    return StoredMetadata(
        name=spec.name,
        disk_gb=spec.disk_gb,
        image=spec.image,
        items=dict(spec.metadata),
        disks={record.key: record for record in disks},
    )


def _instance(stored: StoredMetadata, namespace: str | None) -> ET.Element:
    def tag(name: str) -> str:
        return f"{{{namespace}}}{name}" if namespace else name

    instance = ET.Element(tag("instance"))
    ET.SubElement(instance, tag("name")).text = stored.name or ""
    ET.SubElement(instance, tag("disk_gb")).text = str(stored.disk_gb)
    if stored.image is not None:
        ET.SubElement(instance, tag("image")).text = stored.image
    if stored.items:
        items = ET.SubElement(instance, tag("metadata"))
        for key, value in sorted(stored.items.items()):
            ET.SubElement(items, tag("item"), key=key).text = value
    if stored.disks:
        disks = ET.SubElement(instance, tag("disks"))
        for record in stored.disks.values():
            attributes = {"key": record.key, "kind": record.kind}
            if record.size_gb is not None:
                attributes["size_gb"] = str(record.size_gb)
            if record.image is not None:
                attributes["image"] = record.image
            ET.SubElement(disks, tag("disk"), attributes)
    for name in ("rescue", "migration", "previous", "held"):
        value = getattr(stored, name)
        if value is not None:
            ET.SubElement(instance, tag(name)).text = value
    return instance


def _os(spec: InstanceSpec, device_boot_order: bool) -> ET.Element:
    os_element = ET.Element("os")
    ET.SubElement(os_element, "type").text = "hvm"
    hints = spec.metadata
    for key, tag in ((BOOT_KERNEL, "kernel"), (BOOT_INITRD, "initrd")):
        if key in hints:
            if not hints[key].startswith("/"):
                _invalid(f"metadata {key!r} must be an absolute path on the hypervisor host")
            ET.SubElement(os_element, tag).text = hints[key]
    if BOOT_CMDLINE in hints:
        if BOOT_KERNEL not in hints:
            _invalid(f"metadata {BOOT_CMDLINE!r} needs {BOOT_KERNEL!r}")
        ET.SubElement(os_element, "cmdline").text = hints[BOOT_CMDLINE]
    if BOOT_KERNEL not in hints and not device_boot_order:
        ET.SubElement(os_element, "boot", dev="hd")
    return os_element


def _check_text(spec: InstanceSpec) -> None:
    texts = {"name": spec.name, "image": spec.image or ""}
    for key, value in spec.metadata.items():
        texts[f"metadata key {key[:40]!r}"] = key
        texts[f"metadata item {key[:40]!r}"] = value
    for what, text in texts.items():
        if _NOT_XML.search(text):
            _invalid(f"{what} holds control characters libvirt cannot store")


def _invalid(reason: str) -> None:
    raise exception.InvalidRequest(operation="spawn", reason=reason)
