"""The rescue definition of a domain (contract 1.3), as nova's libvirt driver makes it.

A rescued domain is the instance's own definition with its disks replaced:
the rescue disk (a copy of the rescue image) is ``vda`` and boots, the
instance's root disk follows as ``vdb``; every other device (interfaces,
consoles, display) stays as it was. Its other disks (ephemeral disks,
volumes) are left out while it is rescued, as nova leaves them. The
instance's own definition travels in the driver's metadata
(:attr:`~drivers.libvirt.config.StoredMetadata.rescue`), which is what
unrescue defines again and what a rescued instance reports its devices from.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import replace

from drivers.libvirt import config, constants, devices

__all__ = ["RESCUE_TARGET", "ROOT_TARGET", "definition", "root_disk", "source_path"]

#: Where the rescue disk and the instance's root disk are while it is rescued.
RESCUE_TARGET = "vda"
ROOT_TARGET = "vdb"


def root_disk(domain: ET.Element) -> ET.Element | None:
    """The disk the domain boots from: the disk first in the boot order, else the
    first disk if no device has an order (``<boot dev='hd'/>``), else None."""
    disks = [d for d in domain.iterfind("devices/disk") if d.get("device", "disk") == "disk"]
    ordered = [(order, d) for d in disks if (order := _order(d)) is not None]
    if ordered:
        return min(ordered, key=lambda pair: pair[0])[1]
    if any(d.find("boot") is not None for d in domain.iterfind("devices/*")):
        return None  # it boots from something else
    return disks[0] if disks else None


def _order(element: ET.Element) -> int | None:
    boot = element.find("boot")
    text = boot.get("order", "") if boot is not None else ""
    return int(text) if text.isdigit() else None


def source_path(disk: ET.Element) -> str | None:
    """The file or block device behind a local ``disk``, or None for a network disk."""
    source = disk.find("source")
    if source is None:
        return None
    return source.get("file") or source.get("dev")


def definition(
    original: ET.Element, original_text: str, rescue_path: str, stored: config.StoredMetadata
) -> str:
    """The rescue definition of the domain whose own definition is ``original``.

    :param original_text: the same definition as text, kept in the metadata.
    :param rescue_path: the rescue disk's file or block device.
    :param stored: the metadata the domain carries now.
    """
    tree = copy.deepcopy(original)
    for os_boot in tree.findall("os/boot"):
        tree.find("os").remove(os_boot)  # type: ignore[union-attr]
    container = tree.find("devices")
    if container is None:
        container = ET.SubElement(tree, "devices")
    root = root_disk(tree)
    for element in list(container):
        if element.tag == "disk" and element is not root:
            container.remove(element)
        for order in element.findall("boot"):
            element.remove(order)
    if root is not None:
        target = root.find("target")
        if target is None:
            target = ET.SubElement(root, "target")
        target.attrib.update(dev=ROOT_TARGET, bus="virtio")
        root.attrib.pop("address", None)
        for address in root.findall("address"):
            root.remove(address)  # a virtio disk's address may differ from the one it had
    container.insert(0, devices.local_disk_element(rescue_path, RESCUE_TARGET, 0))
    metadata = tree.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(tree, "metadata")
    for element in metadata.findall(f"{{{constants.METADATA_NS}}}instance"):
        metadata.remove(element)
    metadata.append(config.metadata_element(replace(stored, rescue=original_text)))
    return ET.tostring(tree, encoding="unicode")
