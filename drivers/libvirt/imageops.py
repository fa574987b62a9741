"""Images of instances (contract 1.3): volumes of the host's storage pool.

Images live where the driver finds the images it builds root disks from:
``[libvirt] storage_pool``. A snapshot is a raw copy of the instance's root
disk volume, made by ``storageVolCreateXMLFrom`` (libvirt copies the data
itself, reading the source as a plain file, which a running qemu's image
lock does not forbid). Its volume is named after the instance and the
image name (:func:`volume_name`), so that the image an instance already has
of a name is found again by any worker, after any restart; the image id is
``<pool>/<volume>``. A snapshot's volume may also serve as the image of a
new instance, by that volume name.

libvirt reports no progress of a volume copy; while it runs, the new
volume's allocation, against the root disk's, is the progress reported
(the end of a sparse copy may jump to 100).

The rescue disk of a rescued instance is a copy of the rescue image in the
same pool, named like the instance's other disks (``<uuid>-rescue``), so
destroying the instance removes it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import xml.etree.ElementTree as ET

import libvirt
from oslo_config import cfg

from computed import exception
from computed.objects import ImageRef
from drivers import base
from drivers.libvirt import errors

__all__ = [
    "DISK_FORMAT",
    "IMAGE_PREFIX",
    "ImageOps",
    "find_volume",
    "rescue_volume",
    "volume_name",
]

LOG = logging.getLogger(__name__)

#: The prefix of every snapshot's volume name; only such volumes are deleted as images.
IMAGE_PREFIX = "snapshot-"
#: The format of the images snapshots make.
DISK_FORMAT = "raw"
#: Seconds between two looks at a copy under way.
PROGRESS_INTERVAL = 0.5

# A file name has at most 255 bytes; a longer image name is cut and hashed.
_MAX_NAME = 255
_HASH_LENGTH = 16


def volume_name(uuid: str, image_name: str) -> str:
    """The volume of instance ``uuid``'s image ``image_name``: the same on every call."""
    name = f"{IMAGE_PREFIX}{uuid}-{image_name}"
    if len(name.encode()) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(image_name.encode()).hexdigest()[:_HASH_LENGTH]
    kept = name.encode()[: _MAX_NAME - _HASH_LENGTH - 1].decode(errors="ignore")
    return f"{kept}~{digest}"


class ImageOps:
    """Snapshots, their deletion and rescue disks, given an open connection."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf

    def find(
        self, conn: libvirt.virConnect, host: str, uuid: str, image_name: str
    ) -> ImageRef | None:
        """The image instance ``uuid`` has of ``image_name``, if it has one."""
        pool_name, pool = self._pool(conn, host, "snapshot")
        vol = find_volume(pool, volume_name(uuid, image_name))
        return None if vol is None else _ref(host, uuid, image_name, pool_name, vol)

    def take(
        self,
        conn: libvirt.virConnect,
        host: str,
        uuid: str,
        image_name: str,
        root_path: str,
        progress: base.Progress,
    ) -> ImageRef:
        """Copy the root disk at ``root_path`` into a new image of the pool.

        :raises computed.exception.UnsupportedOperation: if the root disk is
            not a volume of a storage pool libvirt knows.
        """
        pool_name, pool = self._pool(conn, host, "snapshot")
        try:
            source = conn.storageVolLookupByPath(root_path)
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) != libvirt.VIR_ERR_NO_STORAGE_VOL:
                raise
            raise exception.UnsupportedOperation(
                operation="snapshot",
                driver=errors.DRIVER,
                host=host,
                detail=f"the root disk {root_path} is not a volume of a storage pool",
            ) from exc
        name = volume_name(uuid, image_name)
        _state, capacity, allocation = source.info()
        volume = ET.Element("volume")
        ET.SubElement(volume, "name").text = name
        ET.SubElement(volume, "capacity", unit="bytes").text = str(capacity)
        # Sparse: its allocation grows with the copy, which is how progress is seen.
        ET.SubElement(volume, "allocation", unit="bytes").text = "0"
        ET.SubElement(ET.SubElement(volume, "target"), "format", type=DISK_FORMAT)
        progress(0)
        vol = _copy(
            pool, name, ET.tostring(volume, encoding="unicode"), source, allocation, progress
        )
        progress(100)
        LOG.info("Host %s: image %r of %s is volume %s/%s", host, image_name, uuid, pool_name, name)
        return _ref(host, uuid, image_name, pool_name, vol)

    def delete(self, conn: libvirt.virConnect, host: str, image_id: str) -> None:
        """Delete the image ``image_id`` (``<pool>/<volume>``); nothing to do if it is gone.

        Only a snapshot's volume is ever deleted: an id naming any other
        volume (a base image, an instance's disk) names no image.
        """
        pool_name, _, name = image_id.partition("/")
        if not name.startswith(IMAGE_PREFIX) or "/" in name:
            LOG.info("Host %s: %r names no image of this driver; nothing to delete", host, image_id)
            return
        try:
            pool = conn.storagePoolLookupByName(pool_name)
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            return
        vol = find_volume(pool, name)
        if vol is not None:
            vol.delete(0)
            LOG.info("Host %s: image %s deleted", host, image_id)

    def rescue_disk(self, conn: libvirt.virConnect, host: str, uuid: str, image: str) -> str:
        """A new copy of image ``image`` to rescue instance ``uuid`` from; its path.

        :raises computed.exception.InvalidRequest: if the pool has no such image.
        """
        pool_name, pool = self._pool(conn, host, "rescue")
        source = find_volume(pool, image)
        if source is None:
            raise exception.InvalidRequest(
                operation="rescue",
                reason=f"image {image!r} is not a volume of storage pool {pool_name!r}",
            )
        name = rescue_volume(uuid)
        self.remove_rescue_disk(conn, host, uuid)  # left by a rescue that died
        volume = ET.Element("volume")
        ET.SubElement(volume, "name").text = name
        ET.SubElement(volume, "capacity", unit="bytes").text = str(source.info()[1])
        ET.SubElement(ET.SubElement(volume, "target"), "format", type="raw")
        vol = pool.createXMLFrom(ET.tostring(volume, encoding="unicode"), source, 0)
        path: str = vol.path()
        return path

    def remove_rescue_disk(self, conn: libvirt.virConnect, host: str, uuid: str) -> None:
        """Delete instance ``uuid``'s rescue disk, if it has one."""
        if not self._conf.libvirt.storage_pool:
            return
        _pool_name, pool = self._pool(conn, host, "unrescue")
        vol = find_volume(pool, rescue_volume(uuid))
        if vol is not None:
            vol.delete(0)

    def _pool(
        self, conn: libvirt.virConnect, host: str, operation: str
    ) -> tuple[str, libvirt.virStoragePool]:
        pool_name: str | None = self._conf.libvirt.storage_pool
        if not pool_name:
            raise exception.UnsupportedOperation(
                operation=operation,
                driver=errors.DRIVER,
                host=host,
                detail="images and rescue disks need [libvirt] storage_pool",
            )
        return pool_name, conn.storagePoolLookupByName(pool_name)


def rescue_volume(uuid: str) -> str:
    """The volume of instance ``uuid``'s rescue disk."""
    return f"{uuid}-rescue"


def find_volume(pool: libvirt.virStoragePool, name: str) -> libvirt.virStorageVol | None:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if errors.code_of(exc) != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
        return None


def _ref(
    host: str, uuid: str, image_name: str, pool_name: str, vol: libvirt.virStorageVol
) -> ImageRef:
    return ImageRef(
        image_id=f"{pool_name}/{vol.name()}",
        name=image_name,
        instance_uuid=uuid,
        host=host,
        location=vol.path(),
        disk_format=DISK_FORMAT,
        size_bytes=vol.info()[1],
    )


def _copy(
    pool: libvirt.virStoragePool,
    name: str,
    xml: str,
    source: libvirt.virStorageVol,
    expected: int,
    progress: base.Progress,
) -> libvirt.virStorageVol:
    """``createXMLFrom``, reporting the new volume's allocation as it grows."""
    done = threading.Event()

    def watch() -> None:
        reported = 0
        while not done.wait(PROGRESS_INTERVAL):
            with contextlib.suppress(libvirt.libvirtError):  # not there yet, or done
                allocation = pool.storageVolLookupByName(name).info()[2]
                percent = min(99, allocation * 100 // expected) if expected else 0
                if percent > reported:
                    reported = percent
                    progress(percent)

    watcher = base.operation_thread(watch, name=f"snapshot-{name[:40]}")
    watcher.start()
    try:
        return pool.createXMLFrom(xml, source, 0)
    finally:
        done.set()
        watcher.join()
