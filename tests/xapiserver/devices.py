"""VBDs and VIFs: create, plug, unplug, destroy, and their allowed operations.

The checks follow ocaml/xapi/xapi_vbd.ml (``create``), xapi_vbd_helpers.ml
and xapi_vif_helpers.ml (``valid_operations``, ``destroy``, ``create``):

* ``VBD.create``: ``VDI_INCOMPATIBLE_TYPE``, ``VBD_CDS_MUST_BE_READONLY``,
  ``VBD_NOT_REMOVABLE_MEDIA ["in constructor"]`` (only a CD may be empty),
  ``VDI_READONLY``, ``INVALID_DEVICE`` (``userdevice`` must be a number,
  ``autodetect`` or a name like ``xvdb``), ``DEVICE_ALREADY_EXISTS``
  (``1``, ``xvdb``, ``hdb`` and ``sdb`` name the same slot). A new VBD is
  never attached: a halted VM's VBDs are attached when it starts, a running
  VM's by ``VBD.plug``.
* ``plug`` / ``unplug`` / ``unplug_force``, checked in xapi's order: a VBD
  marked not unpluggable (``VBD_NOT_UNPLUGGABLE``), then the VM's power
  state (Running: ``DEVICE_ALREADY_ATTACHED`` / ``DEVICE_ALREADY_DETACHED``;
  else ``VM_BAD_POWER_STATE [vm, "running", actual]``), then a shutdown,
  suspend or pause in progress on the VM (``OPERATION_NOT_ALLOWED``), then an
  HVM CD drive (``OPERATION_NOT_ALLOWED``), then sharing: a VDI attached
  elsewhere, not sharable, with a writer (``VDI_IN_USE [vdi]``).
* ``VIF.create``: ``INVALID_DEVICE`` (not a number), ``MAC_INVALID``,
  ``DEVICE_ALREADY_EXISTS``. An empty MAC is generated, as xapi does for
  VMs carrying ``other_config:mac_seed`` (every VM xapi makes has one).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import errors as E
from . import records, vmops
from .errors import XapiError
from .state import Call, PoolState
from .wire import NULL_REF

#: VDI types a VBD may point to (xapi_vbd.ml).
_VBD_VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump", "metadata")
_DISK_NAME = re.compile(r"^(?:sd|xvd|hd)([a-p])(\d*)$")
_FLOPPY_NAME = re.compile(r"^fd[ab]\d*$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")
#: VM operations during which no device may be plugged or unplugged.
_BLOCKING_VM_OPS = ("clean_shutdown", "hard_shutdown", "suspend", "pause")

VBD_OPS = ("attach", "plug", "unplug", "unplug_force")
VIF_OPS = ("attach", "plug", "unplug", "unplug_force")


def valid_vbd_device(device: str, vbd_type: str) -> bool:
    """xapi_vbd_helpers.valid_device."""
    if device == "autodetect" or _DISK_NAME.match(device) or _FLOPPY_NAME.match(device):
        return True
    return vbd_type != "Floppy" and re.fullmatch(r"-?\d+", device) is not None


def disk_number(device: str) -> int | None:
    """The slot a VBD device name stands for: ``1``, ``xvdb``, ``hdb``, ``sdb`` are all 1."""
    if device.isdigit():
        return int(device)
    match = _DISK_NAME.match(device)
    return ord(match.group(1)) - ord("a") if match else None


def device_name(userdevice: str) -> str:
    """The guest's name for a VBD plugged at ``userdevice`` (``xvdb`` for ``1``)."""
    number = disk_number(userdevice)
    return userdevice if number is None else "xvd" + chr(ord("a") + number % 26)


# ---------------------------------------------------------------- VBD


def vbd_create(call: Call, struct: dict[str, Any]) -> str:
    from .methods import build_record

    fields = build_record(
        "VBD",
        struct,
        records.VBD_CREATE_REQUIRED,
        records.VBD_CREATE_OPTIONAL,
        records.VBD_FIELD_KINDS,
    )
    pool = call.pool
    with pool.lock:
        vm = pool.get("VM", fields["VM"])
        empty, vdi_ref = fields["empty"], fields["VDI"]
        vdi = None if empty and vdi_ref == NULL_REF else pool.get("VDI", vdi_ref)
        if vdi is not None and not empty and vdi["type"] not in _VBD_VDI_TYPES:
            raise XapiError(E.VDI_INCOMPATIBLE_TYPE, vdi_ref, vdi["type"])
        if fields["type"] == "CD" and fields["mode"] != "RO":
            raise XapiError(E.VBD_CDS_MUST_BE_READONLY)
        if fields["type"] != "CD" and empty:
            raise XapiError(E.VBD_NOT_REMOVABLE_MEDIA, "in constructor")
        if fields["mode"] == "RW" and vdi is not None and vdi["read_only"]:
            raise XapiError(E.VDI_READONLY, vdi_ref)
        fields["userdevice"] = _userdevice(pool, vm, fields["userdevice"], fields["type"])
        fields.update(currently_attached=False, device="")
        return vmops.new_vbd(pool, fields)


def _userdevice(pool: PoolState, vm: dict[str, Any], wanted: str, vbd_type: str) -> str:
    used = {
        disk_number(pool.get("VBD", r)["userdevice"]) for r in vm["VBDs"] if pool.exists("VBD", r)
    }
    free = [n for n in range(16) if n not in used]
    if not valid_vbd_device(wanted, vbd_type) or (wanted == "autodetect" and not free):
        raise XapiError(E.INVALID_DEVICE, wanted)
    if wanted == "autodetect":
        return str(free[0])
    if disk_number(wanted) in used:
        raise XapiError(E.DEVICE_ALREADY_EXISTS, wanted)
    return wanted


def vbd_errors(pool: PoolState, ref: str, vbd: dict[str, Any]) -> dict[str, XapiError]:
    """xapi_vbd_helpers.valid_operations for the operations modelled: op -> error."""
    found: dict[str, XapiError] = {}

    def refuse(error: XapiError, ops: tuple[str, ...]) -> None:
        for op in ops:
            found.setdefault(op, error)

    vm_ref = vbd["VM"]
    vm = pool.get("VM", vm_ref)
    if not vbd["unpluggable"]:
        refuse(XapiError(E.VBD_NOT_UNPLUGGABLE, ref), ("unplug", "unplug_force"))
    _power_rules(vm_ref, vm, ref, vbd, refuse, ("unplug", "unplug_force"))
    if vm["power_state"] == "Running" and vm["domain_type"] == "hvm" and vbd["type"] == "CD":
        reason = "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"
        refuse(XapiError(E.OPERATION_NOT_ALLOWED, reason), ("plug", "unplug", "unplug_force"))
    if not vbd["empty"] and not vbd["currently_attached"] and pool.exists("VDI", vbd["VDI"]):
        if _sharing_conflict(pool, ref, vbd):
            refuse(XapiError(E.VDI_IN_USE, vbd["VDI"]), ("attach", "plug"))
    return found


def _power_rules(
    vm_ref: str,
    vm: dict[str, Any],
    ref: str,
    device: dict[str, Any],
    refuse: Callable[[XapiError, tuple[str, ...]], None],
    unplugs: tuple[str, ...],
) -> None:
    """The power-state rules VBDs and VIFs share: hot-plug needs a running VM."""
    state = vm["power_state"]
    if state == "Running" and device["currently_attached"]:
        refuse(XapiError(E.DEVICE_ALREADY_ATTACHED, ref), ("plug",))
    elif state == "Running":
        refuse(XapiError(E.DEVICE_ALREADY_DETACHED, ref), unplugs)
    else:
        error = XapiError(E.VM_BAD_POWER_STATE, vm_ref, "running", state.lower())
        refuse(error, ("plug", *unplugs))
    for op in vm["current_operations"].values():
        if op in _BLOCKING_VM_OPS:
            reason = f"Current operation on VM:{vm_ref} is {op}"
            refuse(XapiError(E.OPERATION_NOT_ALLOWED, reason), ("plug", "unplug"))


def _sharing_conflict(pool: PoolState, ref: str, vbd: dict[str, Any]) -> bool:
    vdi = pool.get("VDI", vbd["VDI"])
    if vdi["sharable"]:
        return False
    others = []
    for other_ref in vdi["VBDs"]:
        if other_ref == ref or not pool.exists("VBD", other_ref):
            continue
        other = pool.get("VBD", other_ref)
        owner = pool.get("VM", other["VM"]) if pool.exists("VM", other["VM"]) else None
        if owner is None or owner["power_state"] == "Suspended" or owner["is_control_domain"]:
            continue
        if other["currently_attached"]:
            others.append(other)
    writer = any(o["mode"] == "RW" for o in others)
    return writer or (vbd["mode"] == "RW" and bool(others))


def vbd_view(pool: PoolState, ref: str, rec: dict[str, Any]) -> dict[str, Any]:
    """VBD records as the API shows them: allowed_operations computed."""
    refused = vbd_errors(pool, ref, rec)
    rec["allowed_operations"] = [op for op in VBD_OPS if op not in refused]
    return rec


def _vbd_plug(call: Call, ref: str) -> None:
    _hotplug(call, "VBD", ref, "plug", True)


def _vbd_unplug(call: Call, ref: str) -> None:
    _hotplug(call, "VBD", ref, "unplug", False)


def _vbd_unplug_force(call: Call, ref: str) -> None:
    _hotplug(call, "VBD", ref, "unplug_force", False)


def _hotplug(call: Call, cls: str, ref: str, op: str, attach: bool) -> None:
    pool = call.pool
    with pool.lock:
        device = pool.get(cls, ref)
        check = vbd_errors if cls == "VBD" else vif_errors
        error = check(pool, ref, device).get(op)
        if error is not None:
            raise error
    call.apply_fault()
    with pool.lock:
        device = pool.get(cls, ref)
        changes: dict[str, Any] = {"currently_attached": attach}
        if cls == "VBD":
            changes["device"] = device_name(device["userdevice"]) if attach else ""
        pool.update(cls, ref, **changes)
        pool.touch("VM", device["VM"])


def _detachable(cls: str) -> Callable[[Call, str], None]:
    """VBD.destroy / VIF.destroy: refused while attached (to a running VM, for a VIF)."""

    def handler(call: Call, ref: str) -> None:
        pool = call.pool
        with pool.lock:
            rec = pool.get(cls, ref)
            vm = pool.get("VM", rec["VM"]) if pool.exists("VM", rec["VM"]) else None
            if cls == "VBD" and rec["currently_attached"]:
                owner = vm["uuid"] if vm is not None else ""
                reason = f"VBD '{rec['uuid']}' still attached to '{owner}'"
                raise XapiError(E.OPERATION_NOT_ALLOWED, reason)
            running = vm is not None and vm["power_state"] == "Running"
            if cls == "VIF" and running and rec["currently_attached"]:
                raise XapiError(E.OPERATION_NOT_ALLOWED, "VIF currently attached to a running VM")
            pool.link("VM", rec["VM"], cls + "s", ref, add=False)
            if cls == "VBD":
                pool.link("VDI", rec["VDI"], "VBDs", ref, add=False)
            else:
                pool.link("network", rec["network"], "VIFs", ref, add=False)
            pool.remove(cls, ref)

    return handler


# ---------------------------------------------------------------- VIF


def vif_create(call: Call, struct: dict[str, Any]) -> str:
    from .methods import build_record

    fields = build_record(
        "VIF",
        struct,
        records.VIF_CREATE_REQUIRED,
        records.VIF_CREATE_OPTIONAL,
        records.VIF_FIELD_KINDS,
    )
    pool = call.pool
    with pool.lock:
        vm = pool.get("VM", fields["VM"])
        pool.get("network", fields["network"])
        if re.fullmatch(r"-?\d+", fields["device"]) is None:
            raise XapiError(E.INVALID_DEVICE, fields["device"])
        if not fields["MAC"]:
            fields.update(MAC=vmops._random_mac(), MAC_autogenerated=True)
        elif not _MAC.match(fields["MAC"]):
            raise XapiError(E.MAC_INVALID, fields["MAC"])
        used = {pool.get("VIF", r)["device"] for r in vm["VIFs"] if pool.exists("VIF", r)}
        if fields["device"] in used:
            raise XapiError(E.DEVICE_ALREADY_EXISTS, fields["device"])
        fields["currently_attached"] = False
        return vmops.new_vif(pool, fields)


def vif_errors(pool: PoolState, ref: str, vif: dict[str, Any]) -> dict[str, XapiError]:
    """xapi_vif_helpers.valid_operations for the operations modelled: op -> error."""
    found: dict[str, XapiError] = {}

    def refuse(error: XapiError, ops: tuple[str, ...]) -> None:
        for op in ops:
            found.setdefault(op, error)

    _power_rules(vif["VM"], pool.get("VM", vif["VM"]), ref, vif, refuse, ("unplug", "unplug_force"))
    return found


def vif_view(pool: PoolState, ref: str, rec: dict[str, Any]) -> dict[str, Any]:
    refused = vif_errors(pool, ref, rec)
    rec["allowed_operations"] = [op for op in VIF_OPS if op not in refused]
    return rec


def _vif_plug(call: Call, ref: str) -> None:
    _hotplug(call, "VIF", ref, "plug", True)


def _vif_unplug(call: Call, ref: str) -> None:
    _hotplug(call, "VIF", ref, "unplug", False)


def _vif_unplug_force(call: Call, ref: str) -> None:
    _hotplug(call, "VIF", ref, "unplug_force", False)


_SELF = (("self", "ref"),)

HANDLERS: dict[str, tuple[tuple[tuple[str, str], ...], Callable[..., Any], bool]] = {
    "VBD.create": ((("args", "record"),), vbd_create, True),
    "VBD.destroy": (_SELF, _detachable("VBD"), True),
    "VBD.plug": (_SELF, _vbd_plug, True),
    "VBD.unplug": (_SELF, _vbd_unplug, True),
    "VBD.unplug_force": (_SELF, _vbd_unplug_force, True),
    "VIF.create": ((("args", "record"),), vif_create, True),
    "VIF.destroy": (_SELF, _detachable("VIF"), True),
    "VIF.plug": (_SELF, _vif_plug, True),
    "VIF.unplug": (_SELF, _vif_unplug, True),
    "VIF.unplug_force": (_SELF, _vif_unplug_force, True),
}
