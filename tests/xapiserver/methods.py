"""Handlers of the non-generic xapi messages (VM lifecycle, create/destroy,
tasks, sessions, events, hosts).

A handler takes ``(call, *args)`` with arguments already type-checked and
returns a plain Python value; :mod:`.api` marshals it. Errors are raised as
:class:`~.errors.XapiError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import devices, events, migration, records, storage, vmops
from . import errors as E
from .errors import XapiError, field_type_error
from .state import Call
from .wire import NULL_REF, coerce, kind_of_default, now

# ------------------------------------------------------------------ helpers


def build_record(
    cls: str,
    struct: dict[str, Any],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    kinds: dict[str, str],
) -> dict[str, Any]:
    """Check a constructor struct: required fields present, every field typed."""
    defaults = records.DEFAULTS[cls]()
    for name in required:
        if name not in struct:
            raise field_type_error(name)
    out: dict[str, Any] = {}
    for name in required + optional:
        if name in struct:
            kind = kinds.get(name) or kind_of_default(defaults[name])
            out[name] = coerce(kind, struct[name], name)
    return out


def _lifecycle(op: str, fn: Callable[..., None]) -> Callable[..., None]:
    def handler(call: Call, ref: str, *rest: Any) -> None:
        with vmops.vm_operation(call, ref, op) as vm:
            fn(call.pool, ref, vm, *rest)

    handler.__name__ = f"VM_{op}"
    return handler


# ------------------------------------------------------------------ VM


def vm_create(call: Call, struct: dict[str, Any]) -> str:
    fields = build_record(
        "VM", struct, records.VM_CREATE_REQUIRED, records.VM_CREATE_OPTIONAL, records.VM_FIELD_KINDS
    )
    vmops.check_memory(
        fields["memory_static_min"],
        fields["memory_dynamic_min"],
        fields["memory_dynamic_max"],
        fields["memory_static_max"],
    )
    vmops.check_vcpus(fields["VCPUs_max"], fields["VCPUs_at_startup"])
    fields.update(power_state="Halted", is_default_template=False)
    with call.pool.lock:
        return vmops.new_vm(call.pool, fields)


def vm_clone(call: Call, ref: str, new_name: str) -> str:
    with vmops.vm_operation(call, ref, "clone") as vm:
        return vmops.clone(call.pool, ref, vm, new_name, None)


def vm_copy(call: Call, ref: str, new_name: str, sr: str) -> str:
    with vmops.vm_operation(call, ref, "copy") as vm:
        if sr != NULL_REF:
            call.pool.get("SR", sr)
        return vmops.clone(call.pool, ref, vm, new_name, sr)


def vm_snapshot(call: Call, ref: str, new_name: str, ignore_vdis: list[str] | None = None) -> str:
    """The disks are copied while the task advances (``PoolState.copy_progress``)."""
    ignore = [str(v) for v in ignore_vdis or ()]
    pool = call.pool
    with vmops.vm_operation(call, ref, "snapshot") as vm:
        for vdi in vmops.disks(pool, vm):
            if vdi not in ignore:
                storage.assert_capability(pool, pool.get("VDI", vdi)["SR"], "VDI_SNAPSHOT")
        pool.copy_progress(call)
        return vmops.snapshot(pool, ref, pool.get("VM", ref), new_name, ignore)


def _start(call: Call, ref: str, paused: bool, force: bool) -> None:
    with vmops.vm_operation(call, ref, "start") as vm:
        vmops.boot(call.pool, ref, vm, None, paused)


def _start_on(call: Call, ref: str, host: str, paused: bool, force: bool) -> None:
    with vmops.vm_operation(call, ref, "start_on") as vm:
        vmops.boot(call.pool, ref, vm, host, paused)


def _resume(call: Call, ref: str, paused: bool, force: bool) -> None:
    with vmops.vm_operation(call, ref, "resume") as vm:
        vmops.resume(call.pool, ref, vm, None, paused)


def _resume_on(call: Call, ref: str, host: str, paused: bool, force: bool) -> None:
    with vmops.vm_operation(call, ref, "resume_on") as vm:
        vmops.resume(call.pool, ref, vm, host, paused)


def _set_is_a_template(call: Call, ref: str, value: bool) -> None:
    pool = call.pool
    if value:
        with vmops.vm_operation(call, ref, "make_into_template"):
            pool.update("VM", ref, is_a_template=True)
        return
    call.apply_fault()
    with pool.lock:
        vm = pool.get("VM", ref)
        other = {k: v for k, v in vm["other_config"].items() if k != "default_template"}
        pool.update("VM", ref, is_a_template=False, is_default_template=False, other_config=other)


def _memory_setter(op: str, fields: tuple[str, ...]) -> Callable[..., None]:
    def handler(call: Call, ref: str, *values: int) -> None:
        with vmops.vm_operation(call, ref, op) as vm:
            new = {"memory_" + f: v for f, v in zip(fields, values, strict=False)}
            merged = {
                k: vm[k]
                for k in (
                    "memory_static_min",
                    "memory_dynamic_min",
                    "memory_dynamic_max",
                    "memory_static_max",
                )
            }
            merged.update(new)
            vmops.check_memory(
                merged["memory_static_min"],
                merged["memory_dynamic_min"],
                merged["memory_dynamic_max"],
                merged["memory_static_max"],
            )
            call.pool.update("VM", ref, **new)

    return handler


def _set_memory(call: Call, ref: str, value: int) -> None:
    with vmops.vm_operation(call, ref, "changing_memory_limits") as vm:
        vmops.check_memory(vm["memory_static_min"], value, value, value)
        call.pool.update(
            "VM", ref, memory_static_max=value, memory_dynamic_max=value, memory_dynamic_min=value
        )


def _set_vcpus(field: str) -> Callable[..., None]:
    def handler(call: Call, ref: str, value: int) -> None:
        with vmops.vm_operation(call, ref, "changing_VCPUs") as vm:
            vcpus_max = value if field == "VCPUs_max" else vm["VCPUs_max"]
            at_startup = value if field == "VCPUs_at_startup" else vm["VCPUs_at_startup"]
            if field == "VCPUs_max" and value < vm["VCPUs_at_startup"]:
                raise XapiError(E.INVALID_VALUE, "VCPUs_max", value)
            vmops.check_vcpus(vcpus_max, at_startup)
            call.pool.update("VM", ref, **{field: value})

    return handler


def _assert_operation_valid(call: Call, ref: str, op: str) -> None:
    with call.pool.lock:
        error = vmops.operation_error(ref, call.pool.get("VM", ref), op)
        if error is not None:
            raise error


def _assert_can_boot_here(call: Call, ref: str, host: str) -> None:
    with call.pool.lock:
        vmops.choose_host(call.pool, call.pool.get("VM", ref), host)


def _possible_hosts(call: Call, ref: str) -> list[str]:
    with call.pool.lock:
        vm = call.pool.get("VM", ref)
        need = call.pool.vm_memory_need(vm)
        return [h for h in call.pool.refs("host") if call.pool.host_free_memory(h) >= need]


def _allowed_devices(field: str, count: int) -> Callable[[Call, str], list[str]]:
    def handler(call: Call, ref: str) -> list[str]:
        with call.pool.lock:
            vm = call.pool.get("VM", ref)
            cls = "VBD" if field == "VBDs" else "VIF"
            key = "userdevice" if cls == "VBD" else "device"
            used = {call.pool.get(cls, r)[key] for r in vm[field] if call.pool.exists(cls, r)}
            if cls == "VBD":
                used = {str(devices.disk_number(u)) for u in used}
            return [str(n) for n in range(count) if str(n) not in used]

    return handler


def _vm_destroy(call: Call, ref: str) -> None:
    with vmops.vm_operation(call, ref, "destroy") as vm:
        vmops.destroy(call.pool, ref, vm)


VM_HANDLERS: dict[str, tuple[tuple[tuple[str, str], ...], Callable[..., Any], bool]] = {
    # name: (params, handler, async)
    "create": ((("args", "record"),), vm_create, True),
    "destroy": ((("self", "ref"),), _vm_destroy, True),
    "clone": ((("vm", "ref"), ("new_name", "string")), vm_clone, True),
    "copy": ((("vm", "ref"), ("new_name", "string"), ("sr", "ref")), vm_copy, True),
    "snapshot": (
        (("vm", "ref"), ("new_name", "string"), ("ignore_vdis", "set")),
        vm_snapshot,
        True,
    ),
    "provision": ((("vm", "ref"),), _lifecycle("provision", vmops.provision), True),
    "start": ((("vm", "ref"), ("start_paused", "bool"), ("force", "bool")), _start, True),
    "start_on": (
        (("vm", "ref"), ("host", "ref"), ("start_paused", "bool"), ("force", "bool")),
        _start_on,
        True,
    ),
    "pause": (
        (("vm", "ref"),),
        _lifecycle("pause", lambda p, r, v: vmops.set_paused(p, r, v, True)),
        True,
    ),
    "unpause": (
        (("vm", "ref"),),
        _lifecycle("unpause", lambda p, r, v: vmops.set_paused(p, r, v, False)),
        True,
    ),
    "clean_shutdown": ((("vm", "ref"),), _lifecycle("clean_shutdown", vmops.halt), True),
    "hard_shutdown": ((("vm", "ref"),), _lifecycle("hard_shutdown", vmops.halt), True),
    "shutdown": ((("vm", "ref"),), _lifecycle("shutdown", vmops.halt), True),
    "clean_reboot": ((("vm", "ref"),), _lifecycle("clean_reboot", vmops.reboot), True),
    "hard_reboot": ((("vm", "ref"),), _lifecycle("hard_reboot", vmops.reboot), True),
    "suspend": ((("vm", "ref"),), _lifecycle("suspend", vmops.suspend), True),
    "resume": ((("vm", "ref"), ("start_paused", "bool"), ("force", "bool")), _resume, True),
    "resume_on": (
        (("vm", "ref"), ("host", "ref"), ("start_paused", "bool"), ("force", "bool")),
        _resume_on,
        True,
    ),
    "set_is_a_template": ((("self", "ref"), ("value", "bool")), _set_is_a_template, False),
    "set_memory_static_max": (
        (("self", "ref"), ("value", "int")),
        _memory_setter("changing_static_range", ("static_max",)),
        False,
    ),
    "set_memory_static_min": (
        (("self", "ref"), ("value", "int")),
        _memory_setter("changing_static_range", ("static_min",)),
        False,
    ),
    "set_memory_dynamic_max": (
        (("self", "ref"), ("value", "int")),
        _memory_setter("changing_dynamic_range", ("dynamic_max",)),
        False,
    ),
    "set_memory_dynamic_min": (
        (("self", "ref"), ("value", "int")),
        _memory_setter("changing_dynamic_range", ("dynamic_min",)),
        False,
    ),
    "set_memory_dynamic_range": (
        (("self", "ref"), ("min", "int"), ("max", "int")),
        _memory_setter("changing_dynamic_range", ("dynamic_min", "dynamic_max")),
        True,
    ),
    "set_memory_static_range": (
        (("self", "ref"), ("min", "int"), ("max", "int")),
        _memory_setter("changing_static_range", ("static_min", "static_max")),
        True,
    ),
    "set_memory_limits": (
        (
            ("self", "ref"),
            ("static_min", "int"),
            ("static_max", "int"),
            ("dynamic_min", "int"),
            ("dynamic_max", "int"),
        ),
        _memory_setter(
            "changing_memory_limits", ("static_min", "static_max", "dynamic_min", "dynamic_max")
        ),
        True,
    ),
    "set_memory": ((("self", "ref"), ("value", "int")), _set_memory, True),
    "set_VCPUs_max": ((("self", "ref"), ("value", "int")), _set_vcpus("VCPUs_max"), False),
    "set_VCPUs_at_startup": (
        (("self", "ref"), ("value", "int")),
        _set_vcpus("VCPUs_at_startup"),
        False,
    ),
    "assert_operation_valid": ((("self", "ref"), ("op", "string")), _assert_operation_valid, True),
    "assert_can_boot_here": ((("self", "ref"), ("host", "ref")), _assert_can_boot_here, True),
    "get_possible_hosts": ((("vm", "ref"),), _possible_hosts, True),
    "get_allowed_VBD_devices": ((("vm", "ref"),), _allowed_devices("VBDs", 16), False),
    "get_allowed_VIF_devices": ((("vm", "ref"),), _allowed_devices("VIFs", 7), False),
    "get_boot_record": ((("self", "ref"),), lambda call, ref: call.pool.view("VM", ref), False),
    **migration.HANDLERS,
}

# ------------------------------------------------------------------ VDI / VBD / VIF


def vdi_create(call: Call, struct: dict[str, Any]) -> str:
    fields = build_record(
        "VDI",
        struct,
        records.VDI_CREATE_REQUIRED,
        records.VDI_CREATE_OPTIONAL,
        records.VDI_FIELD_KINDS,
    )
    with call.pool.lock:
        call.pool.get("SR", fields["SR"])
        storage.assert_plugged(call.pool, fields["SR"])
        storage.assert_capability(call.pool, fields["SR"], "VDI_CREATE")
        if fields["virtual_size"] < 0:
            raise XapiError(E.INVALID_VALUE, "virtual_size", fields["virtual_size"])
        return vmops.new_vdi(call.pool, fields)


def vdi_destroy(call: Call, ref: str) -> None:
    pool = call.pool
    with pool.lock:
        vdi = pool.get("VDI", ref)
        for vbd_ref in vdi["VBDs"]:
            vbd = pool.get("VBD", vbd_ref)
            if vbd["currently_attached"] or (
                pool.exists("VM", vbd["VM"])
                and pool.get("VM", vbd["VM"])["power_state"] != "Halted"
            ):
                raise XapiError(E.VDI_IN_USE, ref, "destroy")
        storage.vdi_destroy_allowed(pool, ref)
        for vbd_ref in list(vdi["VBDs"]):
            pool.link("VM", pool.get("VBD", vbd_ref)["VM"], "VBDs", vbd_ref, add=False)
            pool.remove("VBD", vbd_ref)
        pool.link("SR", vdi["SR"], "VDIs", ref, add=False)
        pool.link("VDI", vdi["snapshot_of"], "snapshots", ref, add=False)
        pool.remove("VDI", ref)


# ------------------------------------------------------------------ tasks, events, host


def task_create(call: Call, label: str, description: str) -> str:
    return call.pool.create_task(label, description)


def task_cancel(call: Call, ref: str) -> None:
    with call.pool.lock:
        task = call.pool.get("task", ref)
        if task["status"] != "pending" or "cancel" not in task["allowed_operations"]:
            raise XapiError(E.OPERATION_NOT_ALLOWED, "task is not pending")
        call.pool.update("task", ref, status="cancelling")


def task_destroy(call: Call, ref: str) -> None:
    call.pool.remove("task", ref)


def event_from(call: Call, classes: list[Any], token: str, timeout: float) -> dict[str, Any]:
    return events.event_from(call.pool, call.session, [str(c) for c in classes], token, timeout)


def event_inject(call: Call, cls: str, ref: str) -> str:
    canonical = events.known_class(cls)
    if canonical is None:
        raise XapiError(E.HANDLE_INVALID, cls, ref)
    with call.pool.lock:
        call.pool.get(canonical, ref)
        call.pool.touch(canonical, ref)
        return events.format_token(call.pool.generation - 1)


def host_free_memory(call: Call, ref: str) -> int:
    with call.pool.lock:
        call.pool.get("host", ref)
        return call.pool.host_free_memory(ref)


def host_servertime(call: Call, ref: str) -> Any:
    call.pool.get("host", ref)
    return now()


def network_create(call: Call, struct: dict[str, Any]) -> str:
    fields = build_record(
        "network",
        struct,
        ("name_label", "name_description", "other_config"),
        ("MTU", "bridge", "managed", "tags"),
        {},
    )
    with call.pool.lock:
        fields.setdefault("bridge", f"xapi{len(call.pool.refs('network'))}")
        return call.pool.add("network", fields)


def host_set_iscsi_iqn(call: Call, ref: str, value: str) -> None:
    """The initiator name, kept in other_config too (xapi_host.ml)."""
    with call.pool.lock:
        other = dict(call.pool.get("host", ref)["other_config"], iscsi_iqn=value)
        call.pool.update("host", ref, iscsi_iqn=value, other_config=other)


def session_this_host(call: Call, ref: str) -> str:
    call.pool.check_session(ref)
    return call.pool.master_ref


OTHER_HANDLERS: dict[str, tuple[tuple[tuple[str, str], ...], Callable[..., Any], bool]] = {
    "VDI.create": ((("args", "record"),), vdi_create, True),
    "VDI.destroy": ((("self", "ref"),), vdi_destroy, True),
    "network.create": ((("args", "record"),), network_create, True),
    "host.set_iscsi_iqn": ((("host", "ref"), ("value", "string")), host_set_iscsi_iqn, False),
    "task.create": ((("label", "string"), ("description", "string")), task_create, False),
    "task.cancel": ((("task", "ref"),), task_cancel, True),
    "task.destroy": ((("self", "ref"),), task_destroy, False),
    "event.from": (
        (("classes", "set"), ("token", "string"), ("timeout", "float")),
        event_from,
        False,
    ),
    "event.inject": ((("class", "string"), ("ref", "string")), event_inject, False),
    "host.compute_free_memory": ((("host", "ref"),), host_free_memory, True),
    "host.get_servertime": ((("host", "ref"),), host_servertime, False),
    "session.get_this_host": ((("self", "ref"),), session_this_host, False),
}
