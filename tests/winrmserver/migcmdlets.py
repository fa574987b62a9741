"""Cmdlets of moving and resizing VMs: ``Move-VM``, ``Enable-VMMigration``,
``Set-VMProcessor``, ``Set-VMMemory``, ``Invoke-CimMethod``, and ``-ComputerName`` on ``Get-VM``.

``Get-CimInstance`` grows two classes here: ``Msvm_MigrationJob`` of
``root\\virtualization\\v2`` (a migration in progress on the host: its
``PercentComplete`` and ``JobState``, stopped with ``Invoke-CimMethod
-MethodName RequestStateChange -Arguments @{RequestedState=4}``) and
``Win32_OperatingSystem`` of ``root\\cimv2`` (``FreePhysicalMemory`` in KiB);
``-Filter`` takes one WQL equality (``VirtualSystemName = 'GUID'``).

``Move-VM`` runs synchronously, as without ``-AsJob``: a PowerShell job lives
in the powershell.exe of its WinRM command and dies with it, so a driver
waits in the command and watches and stops the host's own migration job
through WMI from other commands.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, cast

from .cmdlets import CMDLETS, VM_TYPE, _by_names, _get_vm, _input_not_bound, vm_view
from .devcmdlets import _hv, _vms
from .hvmigration import MigrationJob
from .hyperv import HyperVError, HyperVHost
from .imgcmdlets import _cim_error
from .imgcmdlets import _get_cim_instance as _get_terminal_service
from .psbind import CmdletSpec, ParamSpec
from .psobjects import PSObject, to_display_string
from .psruntime import Invocation

__all__ = ["MIGRATION_CMDLETS"]

_CIM = "Microsoft.Management.Infrastructure.CimCmdlets."
_V2 = "root\\virtualization\\v2"
_CIMV2 = "root\\cimv2"
_MIGRATION_JOB = "Msvm_MigrationJob"
_OS = "Win32_OperatingSystem"
_FILTER = re.compile(r"^\s*(\w+)\s*=\s*(?:'([^']*)'|\"([^\"]*)\"|(\d+))\s*$")
#: Msvm_MigrationJob.MigrationType: the VM alone, or with its storage.
_VIRTUAL_SYSTEM, _VIRTUAL_SYSTEM_AND_STORAGE = 32768, 32771


def _on(inv: Invocation, computer: str | None) -> HyperVHost:
    """The host a ``-ComputerName`` names (the one the command runs on if None)."""
    if not computer:
        return inv.host
    return cast(HyperVHost, inv.host.fabric_host(computer))


def _get_vm_anywhere(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    names = inv.bound.get("ComputerName") or [None]
    out: list[Any] = []
    for name in names:
        try:
            inv.host = _on(inv, name)
        except HyperVError as exc:
            inv.hyperv_error(exc)
            continue
        out.extend(_get_vm(inv, inputs, has_input))
    return out


def _moving(inv: Invocation, inputs: list[Any], has_input: bool) -> list[tuple[HyperVHost, Any]]:
    """(host, VM) of each VM to move: piped from Get-VM (of any host) or named."""
    if not has_input:
        host = _on(inv, (inv.bound.get("ComputerName") or [None])[0])
        inv.host = host
        return [(host, vm) for vm in _by_names(inv, inv.bound.get("Name", []))]
    found = []
    for item in inputs:
        if isinstance(item, PSObject) and item.type_name == VM_TYPE:
            host = _on(inv, to_display_string(item.props.get("ComputerName")))
            vm = host.vm(item.ref)
            if vm is not None:
                found.append((host, vm))
        else:
            _input_not_bound(inv, item)
    return found


def _move_vm(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    out: list[Any] = []
    for host, vm in _moving(inv, inputs, has_input):
        try:
            host.move_vm(
                vm,
                b["DestinationHost"],
                bool(b.get("IncludeStorage")),
                b.get("DestinationStoragePath"),
            )
        except HyperVError as exc:
            inv.hyperv_error(exc)
            continue
        if b.get("Passthru"):
            out.append(vm_view(_on(inv, b["DestinationHost"]), vm))
    return out


def _enable_migration(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    for item in inputs:
        _input_not_bound(inv, item)
    with inv.host.lock:
        inv.host.migration_enabled = True
    return []


def _configure(what: str) -> Any:
    def body(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
        b = inv.bound
        for vm in _vms(inv, inputs, has_input):
            try:
                if what == "processor":
                    inv.host.configure(vm, processor_count=b.get("Count"))
                else:
                    inv.host.configure(vm, memory_startup=b.get("StartupBytes"))
            except HyperVError as exc:
                inv.hyperv_error(exc)
        return []

    return body


# -- CIM ------------------------------------------------------------------------------------


def _job_view(host: HyperVHost, job: MigrationJob) -> PSObject:
    props: dict[str, Any] = {
        "InstanceID": str(job.id).upper(),
        "Caption": "Virtual System Migration",
        "ElementName": "Virtual System Migration",
        "JobState": job.state,
        "PercentComplete": job.percent,
        "VirtualSystemName": str(job.vm_id).upper(),
        "DestinationHost": job.destination,
        "MigrationType": _VIRTUAL_SYSTEM_AND_STORAGE if job.with_storage else _VIRTUAL_SYSTEM,
        "ErrorCode": 0,
        "PSComputerName": None,
    }
    return PSObject(
        f"Microsoft.Management.Infrastructure.CimInstance#{_V2}/{_MIGRATION_JOB}", props, ref=job.id
    )


def _os_view(host: HyperVHost) -> PSObject:
    total = host.memory_capacity // 1024
    props: dict[str, Any] = {
        "Caption": "Microsoft Windows Server 2022 Datacenter",
        "CSName": host.name.upper(),
        "TotalVisibleMemorySize": total,
        "FreePhysicalMemory": max(0, total - host.memory_in_use() // 1024),
        "PSComputerName": None,
    }
    return PSObject(f"Microsoft.Management.Infrastructure.CimInstance#{_CIMV2}/{_OS}", props)


def _get_cim_instance(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    namespace = inv.bound.get("Namespace", _CIMV2).lower()
    class_name = inv.bound["ClassName"].lower()
    if namespace == _V2 and class_name == _MIGRATION_JOB.lower():
        with inv.host.lock:
            objects = [_job_view(inv.host, job) for job in inv.host.migration_jobs]
    elif namespace == _CIMV2 and class_name == _OS.lower():
        objects = [_os_view(inv.host)]
    else:
        return cast(list[Any], _get_terminal_service(inv, inputs, has_input))
    query = inv.bound.get("Filter")
    if query is None:
        return objects
    match = _FILTER.match(query)
    if match is None:
        raise inv.terminate(_cim_error(inv, "Invalid query ", "0x80041017", query))
    key, wanted = match.group(1).lower(), next(g for g in match.groups()[1:] if g is not None)
    return [
        obj
        for obj in objects
        if any(
            k.lower() == key and to_display_string(v).lower() == wanted.lower()
            for k, v in obj.props.items()
        )
    ]


def _invoke_cim_method(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    targets = inputs if has_input else b.get("InputObject", [])
    out: list[Any] = []
    for item in targets:
        if not (isinstance(item, PSObject) and item.type_name.endswith("/" + _MIGRATION_JOB)):
            _input_not_bound(inv, item)
            continue
        if b["MethodName"].lower() != "requeststatechange":
            raise inv.terminate(_cim_error(inv, "Method not found ", "0x80041055", b["MethodName"]))
        arguments = {k.lower(): v for k, v in b.get("Arguments", {}).items()}
        with inv.host.lock:
            job = next((j for j in inv.host.migration_jobs if j.id == item.ref), None)
        requested = arguments.get("requestedstate")
        code = 4097 if job is None else job.request_state_change(int(requested or 0))
        out.append(
            PSObject(
                "Microsoft.Management.Infrastructure.CimMethodResult",
                {"ReturnValue": code, "PSComputerName": None},
            )
        )
    return out


# -- specs ----------------------------------------------------------------------------------

_PASSTHRU = ParamSpec("Passthru", "switch")
_COMPUTER = ParamSpec("ComputerName", "string[]")
_VMNAME = ParamSpec("VMName", "string[]", position=0, from_pipeline=True)

MIGRATION_CMDLETS: dict[str, CmdletSpec] = {
    spec.name.lower(): spec
    for spec in [
        dataclasses.replace(
            CMDLETS["get-vm"],
            params=[*CMDLETS["get-vm"].params, _COMPUTER],
            body=_get_vm_anywhere,
        ),
        _hv(
            "Move-VM",
            [
                ParamSpec("Name", "string[]", position=0, from_pipeline=True),
                ParamSpec("DestinationHost", "string", position=1, mandatory=True),
                ParamSpec("IncludeStorage", "switch"),
                ParamSpec("DestinationStoragePath", "string"),
                _COMPUTER,
                _PASSTHRU,
            ],
            _move_vm,
            should_process=True,
        ),
        _hv("Enable-VMMigration", [_COMPUTER], _enable_migration, should_process=True),
        _hv(
            "Set-VMProcessor",
            [_VMNAME, ParamSpec("Count", "int64"), _PASSTHRU],
            _configure("processor"),
            should_process=True,
        ),
        _hv(
            "Set-VMMemory",
            [_VMNAME, ParamSpec("StartupBytes", "int64"), _PASSTHRU],
            _configure("memory"),
            should_process=True,
        ),
        CmdletSpec(
            "Get-CimInstance",
            _CIM + "GetCimInstanceCommand",
            "CimCmdlets",
            [
                ParamSpec("ClassName", "string", position=0, mandatory=True),
                ParamSpec("Namespace", "string"),
                ParamSpec("Filter", "string"),
            ],
            _get_cim_instance,
        ),
        CmdletSpec(
            "Invoke-CimMethod",
            _CIM + "InvokeCimMethodCommand",
            "CimCmdlets",
            [
                ParamSpec("InputObject", "object[]", from_pipeline=True),
                ParamSpec("MethodName", "string", position=0, mandatory=True),
                ParamSpec("Arguments", "hashtable", position=1),
            ],
            _invoke_cim_method,
        ),
    ]
}
