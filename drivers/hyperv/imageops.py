"""Images of instances (contract 1.3): a checkpoint's root disk, exported as a VHDX of its own.

A Hyper-V checkpoint lives and dies with its VM, and its disk is a
differencing disk that needs the VM's. An image must outlive the instance,
so a snapshot is made the way nova's Hyper-V driver makes one: checkpoint,
copy, remove the checkpoint.

=============  ==============================================================
step           PowerShell
=============  ==============================================================
checkpoint     ``Checkpoint-VM -SnapshotName 'computed-image:<name>'
               -Passthru``: the root disk is frozen, the VM writes to a new
               ``.avhdx`` (checkpoints a snapshot interrupted earlier left,
               ``computed-image:*``, are removed first)
copy           ``Convert-VHD -VHDType Dynamic`` of the frozen root disk into a
               staging file beside the instance's disks: one standalone
               dynamic VHDX, its image parent merged in; then ``Move-Item``
               into the host's image directory, so the image appears whole
               or not at all
release        ``Remove-VMSnapshot`` of the checkpoint: Hyper-V merges what
               the VM wrote meanwhile back into the root disk
=============  ==============================================================

The image is ``<VirtualHardDiskPath>\\_base\\<image id>.vhdx``, where the
driver also finds the images it spawns from: the image id is
``<instance uuid>-<name, filesystem-safe>-<16 hex digits of its SHA-256>``,
so the same (instance, name) always gives the same file, which is how a
snapshot repeated (by this worker or another that took the host over) finds
the image it made, before it looks at the instance, even after the instance
is gone. It is also a name
``spawn`` and ``rescue`` accept as an image.

An instance spawned with neither an image nor a boot device has no root
disk file, only the ``disk_gb`` its notes record: its image is a blank
dynamic VHDX of that size (``New-VHD``), what such a disk reads; one of 0 GiB
has nothing to take (InvalidRequest).

Progress: Hyper-V reports a copy's progress only on PowerShell's progress
stream, which reaches a WinRM client when the command has ended, so the
driver reports the steps: 0 when it starts, 10 with the checkpoint, 90 with
the copy, 100 when the checkpoint is gone.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from computed import exception
from computed.objects import ImageRef
from drivers import base
from drivers.hyperv import devices as dev
from drivers.hyperv import powershell as ps
from drivers.hyperv.powershell import PowerShellError
from drivers.hyperv.vmops import VM, VMOps
from drivers.hyperv.winrmclient import HostClient

__all__ = ["CHECKPOINT_PREFIX", "ImageOps", "image_id"]

LOG = logging.getLogger(__name__)

#: The checkpoints a snapshot takes are named this, then the image name.
CHECKPOINT_PREFIX = "computed-image:"
DISK_FORMAT = "vhdx"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_IMAGE_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}-[A-Za-z0-9._-]*-[0-9a-f]{16}$")
_READABLE = 100


def image_id(uuid: str, name: str) -> str:
    """The id, and file name without ``.vhdx``, of the image ``name`` of instance ``uuid``.

    Windows file names are case-insensitive and refuse ``:``, so the name
    itself cannot be the file name; its digest keeps two names apart.
    """
    readable = _UNSAFE.sub("_", name)[:_READABLE]
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{uuid}-{readable}-{digest}"


class ImageOps:
    """snapshot and delete_image, given the served host's :class:`HostClient`."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops

    def snapshot(
        self, client: HostClient, host: str, uuid: str, name: str, progress: base.Progress
    ) -> ImageRef:
        try:
            ident = image_id(ps.guid(uuid), name)
        except ValueError as exc:
            raise exception.InstanceNotFound(uuid=uuid, host=host) from exc
        vhd_dir = self._vmops.vhd_dir(client, host)
        path = dev.image_path(vhd_dir, ident, "snapshot")
        # An image the instance has is returned as it is, whatever became of the instance.
        made = self._find(client, path)
        if made is None:
            vm = self._vmops.settled(client, host, uuid, "snapshot")
            base.check_state("snapshot", uuid, vm.power_state, base.SNAPSHOT_STATES)
            progress(0)
            staging = dev.disk_path(vhd_dir, uuid, f"image-{ident[-16:]}")
            if vm.root is not None:
                made = self._take(client, vm, name, path, staging, progress)
            else:
                made = self._blank(client, vm, path, staging)
            LOG.info("Host %s: image %r of %s made at %s", host, name, uuid, path)
        progress(100)
        return ImageRef(
            image_id=ident,
            name=name,
            instance_uuid=ps.guid(uuid),
            host=host,
            location=str(made.get("Path") or path),
            disk_format=DISK_FORMAT,
            size_bytes=int(made.get("FileSize") or 0) or None,
        )

    def delete_image(self, client: HostClient, host: str, image: str) -> None:
        """Remove the image's file; an id this driver never makes names nothing to remove."""
        if not _IMAGE_ID.match(image):
            return
        path = dev.image_path(self._vmops.vhd_dir(client, host), image, "delete_image")
        try:
            client.run(ps.remove_files([path]))
        except PowerShellError as exc:
            if exc.short_id != "PathNotFound":
                raise
            return
        LOG.info("Host %s: image %s removed", host, image)

    # ----------------------------------------------------------------------

    def _take(
        self,
        client: HostClient,
        vm: VM,
        name: str,
        path: str,
        staging: str,
        progress: base.Progress,
    ) -> dict[str, Any]:
        """Checkpoint, copy the frozen root disk to ``path``, remove the checkpoint."""
        assert vm.root is not None
        # The worker runs one operation on an instance at once: a checkpoint of the
        # driver's that is there now is one an interrupted snapshot left.
        client.run(ps.remove_checkpoints(vm.vm_id, CHECKPOINT_PREFIX + "*"))
        checkpoint = _one(
            client.run(ps.checkpoint_vm(vm.vm_id, CHECKPOINT_PREFIX + name)), "checkpoint_vm"
        )
        try:
            progress(10)
            # The checkpoint holds the disk as it was; the VM now writes to a new .avhdx.
            frozen = next(
                (d.path for d in dev.drives_of(checkpoint) if d.slot == vm.root.slot),
                vm.root.path,
            )
            made = _one(client.run(ps.export_disk(staging, path, frozen)), "export_disk")
            progress(90)
        finally:
            client.run(ps.remove_checkpoint(str(checkpoint.get("Id"))))
        return made

    @staticmethod
    def _blank(client: HostClient, vm: VM, path: str, staging: str) -> dict[str, Any]:
        """The image of an instance whose root disk was never made: blank, of its disk_gb."""
        if not vm.disk_gb:
            raise exception.InvalidRequest(
                operation="snapshot", reason=f"instance {vm.uuid} has no root disk to take"
            )
        size = vm.disk_gb * dev.GIB
        return _one(client.run(ps.export_disk(staging, path, None, size)), "export_disk")

    @staticmethod
    def _find(client: HostClient, path: str) -> dict[str, Any] | None:
        try:
            found = client.run(ps.get_vhd(path))
        except PowerShellError as exc:
            if exc.category.startswith("ObjectNotFound"):
                return None
            raise
        return found[0] if found else None


def _one(objects: list[dict[str, Any]], script: str) -> dict[str, Any]:
    if len(objects) != 1:
        raise PowerShellError(
            script, f"expected one object from PowerShell, got {len(objects)}", "", ""
        )
    return objects[0]
