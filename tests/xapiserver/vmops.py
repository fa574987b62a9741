"""VM lifecycle: which operation is valid when, and what each one does.

The checks and their order follow ``check_operation_error`` in
ocaml/xapi/xapi_vm_lifecycle.ml: blocked operations, then the power state
(``VM_BAD_POWER_STATE [vm, expected, actual]`` with lower-case names joined by
", "), then operations in progress, then templates (``VM_IS_TEMPLATE [vm,
op]``), then snapshots (``VM_IS_SNAPSHOT [vm, op]``), then provision of a
non-template, then the control domain.
"""

from __future__ import annotations

import copy
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import errors as E
from .errors import XapiError
from .state import Call, PoolState
from .wire import NULL_REF, new_uuid, now

ALL_STATES = ("Halted", "Paused", "Suspended", "Running")
# op -> allowed power states, in the order xapi reports them.
POWER_ALLOWED: dict[str, tuple[str, ...]] = {
    "start": ("Halted",),
    "start_on": ("Halted",),
    "provision": ("Halted",),
    "make_into_template": ("Halted",),
    "changing_shadow_memory": ("Halted",),
    "changing_static_range": ("Halted",),
    "changing_memory_limits": ("Halted",),
    "changing_VCPUs": ("Halted",),
    "unpause": ("Paused",),
    "resume": ("Suspended",),
    "resume_on": ("Suspended",),
    "clean_reboot": ("Running",),
    "clean_shutdown": ("Running",),
    "pause": ("Running",),
    "pool_migrate": ("Running",),
    "suspend": ("Running",),
    "changing_VCPUs_live": ("Running",),
    "changing_dynamic_range": ("Halted", "Running"),
    "clone": ("Halted",),
    "copy": ("Halted",),
    "snapshot": ALL_STATES,
    "destroy": ("Halted", "Suspended"),
    "export": ("Halted", "Suspended"),
    "hard_reboot": ("Paused", "Running"),
    "hard_shutdown": ("Paused", "Suspended", "Running"),
    "shutdown": ("Paused", "Suspended", "Running"),
    "power_state_reset": ALL_STATES,
    "metadata_export": ALL_STATES,
}
TEMPLATE_ALLOWED = frozenset(
    {
        "changing_dynamic_range",
        "changing_static_range",
        "changing_memory_limits",
        "changing_shadow_memory",
        "changing_VCPUs",
        "clone",
        "copy",
        "export",
        "metadata_export",
        "provision",
    }
)
#: What a snapshot VM allows (check_snapshot); the rest is VM_IS_SNAPSHOT [vm, op].
SNAPSHOT_ALLOWED = frozenset(
    {"revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export"}
)
DOM0_ALLOWED = frozenset({"changing_dynamic_range", "start", "metadata_export"})
# Operations listed in VM.allowed_operations (the ones this server models).
LISTED_OPS = (
    "copy",
    "clone",
    "snapshot",
    "start",
    "start_on",
    "pause",
    "unpause",
    "clean_shutdown",
    "clean_reboot",
    "hard_shutdown",
    "hard_reboot",
    "suspend",
    "resume",
    "resume_on",
    "pool_migrate",
    "export",
    "destroy",
    "provision",
    "make_into_template",
    "changing_static_range",
    "changing_shadow_memory",
    "changing_dynamic_range",
    "changing_VCPUs",
    "changing_memory_limits",
)
OTHER_OP_WAIT = 5.0
MEMORY_ORDER = "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max"


def allowed_states(vm: dict[str, Any], op: str) -> tuple[str, ...]:
    states = POWER_ALLOWED[op]
    if vm["is_control_domain"] and op in (
        "changing_VCPUs",
        "changing_static_range",
        "changing_memory_limits",
    ):
        states = ("Halted", "Running")
    return states


def operation_error(ref: str, vm: dict[str, Any], op: str) -> XapiError | None:
    """The error xapi would report for ``op`` on ``vm`` (ignoring current ops)."""
    blocked = vm["blocked_operations"]
    if op in blocked:
        return XapiError(E.OPERATION_BLOCKED, ref, blocked[op])
    states = allowed_states(vm, op)
    if vm["power_state"] not in states:
        return XapiError(
            E.VM_BAD_POWER_STATE,
            ref,
            ", ".join(s.lower() for s in states),
            vm["power_state"].lower(),
        )
    if vm["is_a_template"] and not vm["is_a_snapshot"]:
        default = vm["is_default_template"] or vm["other_config"].get(
            "default_template", ""
        ).lower() in ("1", "true")
        if op not in TEMPLATE_ALLOWED and not (op == "destroy" and not default):
            return XapiError(E.VM_IS_TEMPLATE, ref, op)
    if vm["is_a_snapshot"] and op not in SNAPSHOT_ALLOWED:
        return XapiError(E.VM_IS_SNAPSHOT, ref, op)
    if op == "provision" and not vm["is_a_template"]:
        return XapiError(E.ONLY_PROVISION_TEMPLATE)
    if vm["is_control_domain"] and op not in DOM0_ALLOWED:
        return XapiError(E.OPERATION_NOT_ALLOWED, E.DOM0_OPERATION_REASON)
    return None


def vm_view(pool: PoolState, ref: str, rec: dict[str, Any]) -> dict[str, Any]:
    """VM records as the API shows them: allowed_operations computed."""
    rec["allowed_operations"] = [op for op in LISTED_OPS if operation_error(ref, rec, op) is None]
    return rec


@contextmanager
def vm_operation(call: Call, ref: str, op: str) -> Iterator[dict[str, Any]]:
    """Validate ``op``, mark it in current_operations, run the body under the lock.

    An operation already in progress on the VM is waited for (xapi's message
    forwarding retries too); after ``OTHER_OP_WAIT`` seconds the call fails with
    ``OTHER_OPERATION_IN_PROGRESS [VM, vm]``. An injected delay is spent while
    the operation is marked in progress.
    """
    pool = call.pool
    key = call.task or f"call:{new_uuid()}"
    with pool.lock:
        deadline = time.monotonic() + OTHER_OP_WAIT
        vm = pool.get("VM", ref)
        while vm["current_operations"]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XapiError(E.OTHER_OPERATION_IN_PROGRESS, "VM", ref)
            pool.changed.wait(remaining)
            vm = pool.get("VM", ref)
        error = operation_error(ref, vm, op)
        if error is not None:
            raise error
        vm["current_operations"][key] = op
        pool.touch("VM", ref)
    try:
        call.apply_fault()
        with pool.lock:
            yield pool.get("VM", ref)
            pool.refresh_host_metrics()
    finally:
        with pool.lock:
            if pool.exists("VM", ref):
                pool.get("VM", ref)["current_operations"].pop(key, None)
                pool.touch("VM", ref)


# ---------------------------------------------------------------- power ops


def host_live(pool: PoolState, host_ref: str) -> bool:
    """Whether the host's heartbeat is seen (``host_metrics.live``)."""
    host = pool.get("host", host_ref)
    metrics = host["metrics"]
    live = (
        pool.get("host_metrics", metrics)["live"] if pool.exists("host_metrics", metrics) else True
    )
    return bool(live)


def assert_live(pool: PoolState, host_ref: str) -> None:
    """:raises XapiError: ``HOST_OFFLINE [host]`` unless the host is live."""
    if not host_live(pool, host_ref):
        raise XapiError(E.HOST_OFFLINE, host_ref)


def choose_host(pool: PoolState, vm: dict[str, Any], host_ref: str | None) -> str:
    """A host with room for ``vm`` or HOST_NOT_ENOUGH_FREE_MEMORY [needed, available]."""
    need = pool.vm_memory_need(vm)
    if host_ref is not None:
        pool.get("host", host_ref)
        assert_live(pool, host_ref)
        candidates = [host_ref]
    else:
        affinity = vm["affinity"]
        live = [h for h in pool.refs("host") if host_live(pool, h)]
        if not live:
            raise XapiError(E.NO_HOSTS_AVAILABLE)
        candidates = sorted(live, key=lambda h: (h != affinity, -pool.host_free_memory(h)))
    for host in candidates:
        if pool.host_free_memory(host) >= need:
            return host
    best = candidates[0]
    raise XapiError(E.HOST_NOT_ENOUGH_FREE_MEMORY, need, pool.host_free_memory(best))


def _attach_devices(pool: PoolState, vm: dict[str, Any], attached: bool) -> None:
    for vbd_ref in vm["VBDs"]:
        if pool.exists("VBD", vbd_ref):
            vbd = pool.get("VBD", vbd_ref)
            changes: dict[str, Any] = {"currently_attached": attached and not vbd["empty"]}
            if attached and not vbd["device"] and vbd["userdevice"].isdigit():
                changes["device"] = (
                    "xvd" + "abcdefghijklmnopqrstuvwxyz"[int(vbd["userdevice"]) % 26]
                )
            pool.update("VBD", vbd_ref, **changes)
    for vif_ref in vm["VIFs"]:
        if pool.exists("VIF", vif_ref):
            pool.update("VIF", vif_ref, currently_attached=attached)


def _open_console(pool: PoolState, ref: str, vm: dict[str, Any], host: str) -> None:
    """The domain's RFB console, served by the host it runs on: xapi_xenops.ml makes
    one for each console xenopsd reports, at ``https://<host address>/console?uuid=<uuid>``."""
    if vm["consoles"]:
        return
    uuid = new_uuid()
    location = f"https://{pool.get('host', host)['address']}/console?uuid={uuid}"
    console = pool.add(
        "console", {"uuid": uuid, "protocol": "rfb", "location": location, "VM": ref}
    )
    pool.link("VM", ref, "consoles", console)


def _close_consoles(pool: PoolState, ref: str, vm: dict[str, Any]) -> None:
    """The domain is gone, and its consoles with it."""
    for console in list(vm["consoles"]):
        if pool.exists("console", console):
            pool.remove("console", console)
        pool.link("VM", ref, "consoles", console, add=False)


def _set_metrics(pool: PoolState, vm: dict[str, Any], **changes: Any) -> None:
    if pool.exists("VM_metrics", vm["metrics"]):
        pool.update("VM_metrics", vm["metrics"], last_updated=now(), **changes)


def boot(pool: PoolState, ref: str, vm: dict[str, Any], host_ref: str | None, paused: bool) -> None:
    """Give ``vm`` a domain on a host: used by start, start_on, resume."""
    host = choose_host(pool, vm, host_ref)
    pool.domid_counter += 1
    old_host = vm["resident_on"]
    pool.update(
        "VM",
        ref,
        power_state="Paused" if paused else "Running",
        resident_on=host,
        domid=pool.domid_counter,
        memory_target=vm["memory_static_max"],
    )
    if old_host != host:
        pool.link("host", old_host, "resident_VMs", ref, add=False)
    pool.link("host", host, "resident_VMs", ref)
    _attach_devices(pool, vm, True)
    _open_console(pool, ref, vm, host)
    _set_metrics(
        pool,
        vm,
        memory_actual=vm["memory_static_max"],
        VCPUs_number=vm["VCPUs_at_startup"],
        start_time=now(),
        state=["paused" if paused else "running"],
    )


def move_domain(pool: PoolState, ref: str, vm: dict[str, Any], host: str) -> None:
    """The running domain of ``vm`` now runs on ``host`` (the end of a migration):
    a new domid there, its console served by that host."""
    pool.domid_counter += 1
    pool.link("host", vm["resident_on"], "resident_VMs", ref, add=False)
    pool.update("VM", ref, resident_on=host, domid=pool.domid_counter)
    pool.link("host", host, "resident_VMs", ref)
    _close_consoles(pool, ref, vm)
    _open_console(pool, ref, vm, host)
    _set_metrics(pool, vm)


def halt(pool: PoolState, ref: str, vm: dict[str, Any]) -> None:
    """Take ``vm`` to Halted from any state (drops a suspend image)."""
    if vm["power_state"] == "Suspended":
        _drop_suspend_vdi(pool, ref, vm)
    pool.link("host", vm["resident_on"], "resident_VMs", ref, add=False)
    pool.update("VM", ref, power_state="Halted", resident_on=NULL_REF, domid=-1, memory_target=0)
    _attach_devices(pool, vm, False)
    _close_consoles(pool, ref, vm)
    _set_metrics(pool, vm, memory_actual=0, VCPUs_number=0, state=[])


def reboot(pool: PoolState, ref: str, vm: dict[str, Any]) -> None:
    pool.domid_counter += 1
    pool.update("VM", ref, power_state="Running", domid=pool.domid_counter)
    _set_metrics(pool, vm, start_time=now(), state=["running"])


def set_paused(pool: PoolState, ref: str, vm: dict[str, Any], paused: bool) -> None:
    pool.update("VM", ref, power_state="Paused" if paused else "Running")
    _set_metrics(pool, vm, state=["paused" if paused else "running"])


def suspend(pool: PoolState, ref: str, vm: dict[str, Any]) -> None:
    vdi = pool.add(
        "VDI",
        {
            "name_label": f"Suspend image for {vm['name_label']}",
            "SR": pool.default_sr,
            "type": "suspend",
            "virtual_size": vm["memory_static_max"],
            "physical_utilisation": vm["memory_static_max"],
        },
    )
    pool.link("SR", pool.default_sr, "VDIs", vdi)
    pool.link("host", vm["resident_on"], "resident_VMs", ref, add=False)
    pool.update(
        "VM",
        ref,
        power_state="Suspended",
        resident_on=NULL_REF,
        domid=-1,
        suspend_VDI=vdi,
        memory_target=0,
    )
    _attach_devices(pool, vm, False)
    _close_consoles(pool, ref, vm)
    _set_metrics(pool, vm, memory_actual=0, state=[])


def resume(
    pool: PoolState, ref: str, vm: dict[str, Any], host_ref: str | None, paused: bool
) -> None:
    boot(pool, ref, vm, host_ref, paused)
    _drop_suspend_vdi(pool, ref, vm)


def _drop_suspend_vdi(pool: PoolState, ref: str, vm: dict[str, Any]) -> None:
    vdi = vm["suspend_VDI"]
    if pool.exists("VDI", vdi):
        pool.link("SR", pool.get("VDI", vdi)["SR"], "VDIs", vdi, add=False)
        pool.remove("VDI", vdi)
    pool.update("VM", ref, suspend_VDI=NULL_REF)


# ---------------------------------------------------------------- create/copy


def check_memory(static_min: int, dynamic_min: int, dynamic_max: int, static_max: int) -> None:
    if not static_min <= dynamic_min <= dynamic_max <= static_max:
        raise XapiError(E.MEMORY_CONSTRAINT_VIOLATION, MEMORY_ORDER)


def check_vcpus(vcpus_max: int, at_startup: int) -> None:
    if vcpus_max < 1:
        raise XapiError(E.INVALID_VALUE, "VCPUs_max", vcpus_max)
    if not 1 <= at_startup <= vcpus_max:
        raise XapiError(E.INVALID_VALUE, "VCPUs_at_startup", at_startup)


def new_vm(pool: PoolState, fields: dict[str, Any]) -> str:
    """Create a VM object with its VM_metrics."""
    metrics = pool.add("VM_metrics", {"last_updated": now(), "install_time": now()})
    fields = dict(fields, metrics=metrics)
    return pool.add("VM", fields)


def new_vdi(pool: PoolState, fields: dict[str, Any]) -> str:
    fields.setdefault("location", new_uuid())
    ref = pool.add("VDI", fields)
    pool.link("SR", fields["SR"], "VDIs", ref)
    return ref


def new_vbd(pool: PoolState, fields: dict[str, Any]) -> str:
    ref = pool.add("VBD", fields)
    pool.link("VM", fields["VM"], "VBDs", ref)
    pool.link("VDI", fields["VDI"], "VBDs", ref)
    return ref


def clone(pool: PoolState, ref: str, vm: dict[str, Any], new_name: str, sr: str | None) -> str:
    """VM.clone (sr None) / VM.copy: a Halted copy with copies of its disks."""
    return _duplicate_vm(pool, ref, vm, new_name, sr, None)


def snapshot(
    pool: PoolState, ref: str, vm: dict[str, Any], new_name: str, ignore: list[str]
) -> str:
    """VM.snapshot (xapi_vm_snapshot.ml): a Halted template, ``is_a_snapshot`` and
    ``snapshot_of`` the VM, with a snapshot of each disk not in ``ignore`` (each
    VDI ``is_a_snapshot`` and ``snapshot_of`` its disk) and the VM's VIFs, MACs kept.

    The caller has checked that every disk's SR can snapshot.
    """
    taken = _duplicate_vm(pool, ref, vm, new_name, None, set(ignore))
    pool.link("VM", ref, "snapshots", taken)
    return taken


def _duplicate_vm(
    pool: PoolState,
    ref: str,
    vm: dict[str, Any],
    new_name: str,
    sr: str | None,
    ignore: set[str] | None,
) -> str:
    """A Halted copy of ``vm`` and its devices; a snapshot of it unless ``ignore`` is None."""
    fields = copy.deepcopy(vm)
    for key in ("uuid", "allowed_operations", "current_operations", "metrics"):
        fields.pop(key, None)
    other = {k: v for k, v in fields["other_config"].items() if k != "default_template"}
    fields.update(
        name_label=new_name,
        is_default_template=False,
        other_config=other,
        VBDs=[],
        VIFs=[],
        consoles=[],
        snapshots=[],
        children=[],
        VUSBs=[],
        crash_dumps=[],
        VTPMs=[],
        VGPUs=[],
        attached_PCIs=[],
        blobs={},
        power_state="Halted",
        resident_on=NULL_REF,
        domid=-1,
        suspend_VDI=NULL_REF,
        guest_metrics=NULL_REF,
        parent=NULL_REF,
    )
    taking = ignore is not None
    if taking:
        fields.update(is_a_snapshot=True, is_a_template=True, snapshot_of=ref, snapshot_time=now())
    copy_ref = new_vm(pool, fields)
    for vbd_ref in list(vm["VBDs"]):
        vbd = pool.get("VBD", vbd_ref)
        vdi_ref = vbd["VDI"]
        if taking and vdi_ref in (ignore or ()):
            continue
        if not vbd["empty"] and pool.exists("VDI", vdi_ref):
            vdi_ref = _duplicate_vdi(pool, vdi_ref, sr, taking)
        vbd_fields = {
            k: v
            for k, v in copy.deepcopy(vbd).items()
            if k not in ("uuid", "currently_attached", "current_operations", "device")
        }
        vbd_fields.update(VM=copy_ref, VDI=vdi_ref)
        new_vbd(pool, vbd_fields)
    for vif_ref in list(vm["VIFs"]):
        vif = {
            k: v
            for k, v in copy.deepcopy(pool.get("VIF", vif_ref)).items()
            if k not in ("uuid", "currently_attached", "current_operations")
        }
        vif.update(VM=copy_ref)
        if not taking:
            vif["MAC"] = _random_mac()
        new_vif(pool, vif)
    return copy_ref


def _duplicate_vdi(pool: PoolState, vdi_ref: str, sr: str | None, taking: bool) -> str:
    vdi = copy.deepcopy(pool.get("VDI", vdi_ref))
    for key in ("uuid", "VBDs", "location", "current_operations", "snapshots"):
        vdi.pop(key, None)
    if sr is not None and pool.exists("SR", sr):
        vdi["SR"] = sr
    if taking:
        vdi.update(is_a_snapshot=True, snapshot_of=vdi_ref, snapshot_time=now())
    copy_ref = new_vdi(pool, vdi)
    if taking:
        pool.link("VDI", vdi_ref, "snapshots", copy_ref)
    return copy_ref


def disks(pool: PoolState, vm: dict[str, Any]) -> list[str]:
    """The VDIs of the VM's VBDs (empty drives left out)."""
    vbds = (pool.get("VBD", r) for r in vm["VBDs"] if pool.exists("VBD", r))
    return [v["VDI"] for v in vbds if not v["empty"] and pool.exists("VDI", v["VDI"])]


def new_vif(pool: PoolState, fields: dict[str, Any]) -> str:
    ref = pool.add("VIF", fields)
    pool.link("VM", fields["VM"], "VIFs", ref)
    pool.link("network", fields["network"], "VIFs", ref)
    return ref


def _random_mac() -> str:
    raw = new_uuid().replace("-", "")[:10]
    return "02:" + ":".join(raw[i : i + 2] for i in range(0, 10, 2))


def provision(pool: PoolState, ref: str, vm: dict[str, Any]) -> None:
    """Create the disks described by other_config:disks, then drop that key."""
    spec = vm["other_config"].get("disks", "")
    if not spec:
        return
    try:
        disks = ET.fromstring(spec).findall("disk")
    except ET.ParseError as exc:
        raise XapiError(E.INVALID_VALUE, "other_config:disks", str(exc)) from None
    for disk in disks:
        sr_uuid = disk.get("sr", "")
        sr = pool.by_uuid("SR", sr_uuid) if sr_uuid else pool.default_sr
        device = disk.get("device", "0")
        vdi = new_vdi(
            pool,
            {
                "name_label": f"{vm['name_label']} {device}",
                "SR": sr,
                "virtual_size": int(disk.get("size", "0")),
                "type": disk.get("type", "system"),
                "other_config": {},
            },
        )
        new_vbd(
            pool,
            {
                "VM": ref,
                "VDI": vdi,
                "userdevice": device,
                "mode": "RW",
                "bootable": disk.get("bootable", "false").lower() == "true",
                "type": "Disk",
            },
        )
    other = {k: v for k, v in vm["other_config"].items() if k != "disks"}
    pool.update("VM", ref, other_config=other)


def destroy(pool: PoolState, ref: str, vm: dict[str, Any]) -> None:
    """VM.destroy: the VM, its VBDs, VIFs and metrics go; its disks' VDIs stay."""
    if vm["power_state"] == "Suspended":
        _drop_suspend_vdi(pool, ref, vm)
    for vbd_ref in list(vm["VBDs"]):
        if pool.exists("VBD", vbd_ref):
            pool.link("VDI", pool.get("VBD", vbd_ref)["VDI"], "VBDs", vbd_ref, add=False)
            pool.remove("VBD", vbd_ref)
    for vif_ref in list(vm["VIFs"]):
        if pool.exists("VIF", vif_ref):
            pool.link("network", pool.get("VIF", vif_ref)["network"], "VIFs", vif_ref, add=False)
            pool.remove("VIF", vif_ref)
    _close_consoles(pool, ref, vm)
    # snapshots is the other end of snapshot_of: xapi's database keeps it so.
    pool.link("VM", vm["snapshot_of"], "snapshots", ref, add=False)
    for cls, fld in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
        if pool.exists(cls, vm[fld]):
            pool.remove(cls, vm[fld])
    pool.remove("VM", ref)


def set_power_state(pool: PoolState, ref: str, state: str) -> None:
    """Testing hook: the guest changed state by itself (crash, poweroff, ...)."""
    with pool.lock:
        vm = pool.get("VM", ref)
        if state not in ALL_STATES:
            raise XapiError(E.INVALID_VALUE, "power_state", state)
        if state == "Halted":
            halt(pool, ref, vm)
        elif state == "Suspended":
            suspend(pool, ref, vm)
        elif vm["power_state"] in ("Halted", "Suspended"):
            boot(pool, ref, vm, None, state == "Paused")
        else:
            set_paused(pool, ref, vm, state == "Paused")
        pool.refresh_host_metrics()
