"""Images of instances and their consoles (contract 1.3).

============  ===============================================================
snapshot      ``Async.VM.snapshot(vm, name, ignore_vdis)`` of the instance's
              VM, every disk but the root one ignored: a snapshot VM
              (``is_a_snapshot``, ``snapshot_of`` the VM) named like the
              image, with a snapshot of the root VDI. The task's
              ``progress`` is passed on as it advances. The image is that
              snapshot VM: its uuid is the image id. An image of that name
              among the VM's ``snapshots`` is returned instead of taking
              another, which holds for any worker, since xapi keeps the list.
delete_image  the snapshot VM's VDIs destroyed, then the VM (nova's
              ``destroy_vm`` and ``destroy_vdis``); an unknown uuid succeeds
graphical     the ``rfb`` (VNC) or ``rdp`` console of ``VM.get_consoles``
console       (the rescue VM's while rescued): its ``location`` gives host,
              port and path (``/console?uuid=...``, reached by an HTTP CONNECT
              of that path over TLS); the token is the driver's session,
              which the proxy passes as ``session_id``, as nova's XenAPI
              driver had its console proxy do
============  ===============================================================

xapi offers API clients no serial console (a PV guest's text console is
served only as VNC, by ``vncterm``), so the driver has no
``get_serial_console``. Snapshot VMs keep ``other_config`` of the instance's
VM, which is how an image is known to be this driver's and the compute
host's; they are templates and snapshots, never listed as instances, and
they stay when the instance is destroyed.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import XenAPI

from computed import exception
from computed.objects import ConsoleConnection, ConsoleKind, ImageRef, PowerState
from drivers import base
from drivers.xenapi import constants, devices, errors
from drivers.xenapi.conf import Target
from drivers.xenapi.session import PoolSession
from drivers.xenapi.vmops import VMOps, vm_records

__all__ = ["ImageOps"]

LOG = logging.getLogger(__name__)

#: xapi's graphical console protocols, in the contract's terms (``vt100`` is text).
_GRAPHICAL = {"rfb": "vnc", "rdp": "rdp"}
#: What xapi's VHD-based SRs keep a VDI as, unless its ``sm_config`` says otherwise.
_DEFAULT_FORMAT = "vhd"


class ImageOps:
    """Snapshots, their removal and consoles, given the pool's session and the host's target."""

    def __init__(self, vmops: VMOps) -> None:
        self._vmops = vmops

    def snapshot(
        self,
        session: PoolSession,
        target: Target,
        uuid: str,
        image_name: str,
        progress: base.Progress,
    ) -> ImageRef:
        vm, record = self._vmops.get(session, target, uuid)
        found = self._find(session, record, image_name)
        if found is not None:
            return self._image(session, target, uuid, found)
        base.check_state("snapshot", uuid, constants.instance_state(record), base.SNAPSHOT_STATES)
        root = devices.root_vbd(session, record)
        if root is None:
            raise exception.InvalidRequest(
                operation="snapshot", reason=f"instance {uuid} has no root disk"
            )
        others = [
            session.call("VBD.get_VDI", vbd)
            for vbd in record["VBDs"]
            if vbd != root[0] and not session.call("VBD.get_empty", vbd)
        ]
        taken = session.run_task(
            "VM.snapshot",
            vm,
            image_name,
            others,
            progress=lambda done: progress(int(done * 100)),
        )
        LOG.info("Host %s: took image %r of %s (VM %s)", target.host, image_name, uuid, taken)
        return self._image(session, target, uuid, session.call("VM.get_record", taken))

    def delete_image(self, session: PoolSession, target: Target, image_id: str) -> None:
        try:
            vm = session.call("VM.get_by_uuid", image_id)
            record = session.call("VM.get_record", vm)
        except XenAPI.Failure as exc:
            if errors.code_of(exc) in (errors.UUID_INVALID, errors.HANDLE_INVALID):
                return  # gone already
            raise
        other = record["other_config"]
        if not (
            record["is_a_snapshot"]
            and constants.OTHER_CONFIG_UUID in other
            and other.get(constants.OTHER_CONFIG_HOST) == target.host
        ):
            raise exception.InvalidRequest(
                operation="delete_image",
                reason=f"{image_id} is not an image of an instance of host {target.host}",
            )
        try:
            self._vmops.remove(session, vm, record)
        except XenAPI.Failure as exc:
            if errors.code_of(exc) != errors.HANDLE_INVALID:
                raise  # else removed meanwhile
        LOG.info("Host %s: deleted image %s (%r)", target.host, image_id, record["name_label"])

    def graphical_console(
        self, session: PoolSession, target: Target, uuid: str
    ) -> ConsoleConnection:
        _, record = self._vmops.get(session, target, uuid)
        state = constants.instance_state(record)
        base.check_state("get_graphical_console", uuid, state, base.CONSOLE_STATES)
        consoles = record["consoles"]
        if state == PowerState.RESCUED:  # the console is the rescue VM's
            rescue = self._vmops.find_rescue(session, target, uuid)
            consoles = rescue[1]["consoles"] if rescue is not None else []
        for ref in consoles:
            console = session.call("console.get_record", ref)
            protocol = _GRAPHICAL.get(console["protocol"])
            if protocol is None:
                continue
            location = urlsplit(console["location"])
            path = f"{location.path}?{location.query}" if location.query else location.path
            return ConsoleConnection(
                instance_uuid=uuid,
                kind=ConsoleKind.GRAPHICAL,
                protocol=protocol,
                host=location.hostname,
                port=location.port or (443 if location.scheme == "https" else 80),
                path=path,
                token=session.ref,
            )
        raise exception.UnsupportedOperation(
            operation="get_graphical_console", driver=constants.DRIVER, host=target.host
        )

    # ----------------------------------------------------------------------

    @staticmethod
    def _find(
        session: PoolSession, record: dict[str, Any], image_name: str
    ) -> dict[str, Any] | None:
        """The record of the VM's snapshot named ``image_name``, if it has one."""
        for _, snapshot in vm_records(session, record["snapshots"]):
            if snapshot["is_a_snapshot"] and snapshot["name_label"] == image_name:
                return snapshot
        return None

    @staticmethod
    def _image(
        session: PoolSession, target: Target, uuid: str, snapshot: dict[str, Any]
    ) -> ImageRef:
        location, disk_format, size = f"VM {snapshot['uuid']}", _DEFAULT_FORMAT, None
        root = devices.root_vbd(session, snapshot)
        if root is not None:
            vdi = session.call("VDI.get_record", root[1]["VDI"])
            location = f"{location}, VDI {vdi['uuid']}"
            disk_format = vdi["sm_config"].get("image-format") or _DEFAULT_FORMAT
            size = int(vdi["virtual_size"])
        return ImageRef(
            image_id=snapshot["uuid"],
            name=snapshot["name_label"],
            instance_uuid=uuid,
            host=target.host,
            location=location,
            disk_format=disk_format,
            size_bytes=size,
        )
