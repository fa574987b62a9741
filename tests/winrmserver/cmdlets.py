"""The emulator's whole command vocabulary: Hyper-V cmdlets plus a few utilities.

Parameters follow Microsoft's Hyper-V module documentation (names, positions,
aliases, pipeline binding); parameters the real cmdlets have but the emulator does
not model are simply absent, so using one fails with ParameterBindingException
("A parameter cannot be found that matches parameter name ...").

VMs are addressed by ``-Name`` (wildcards allowed, names may repeat on Hyper-V) or
by piping ``Get-VM -Id '<guid>'`` into the other cmdlets, which binds the
VirtualMachine object as Hyper-V does.
"""

from __future__ import annotations

import uuid
from typing import Any

from .hyperv import (
    HardDiskDrive,
    HyperVError,
    HyperVHost,
    MiB,
    NetworkAdapter,
    VirtualMachine,
    VMState,
    has_wildcards,
    wildcard_match,
)
from .psbind import CmdletSpec, ParamSpec
from .psjson import convert_to_json
from .psobjects import PSEnum, PSObject, custom_object, timespan, to_display_string
from .psruntime import Invocation

__all__ = [
    "ADAPTER_TYPE",
    "CMDLETS",
    "DRIVE_TYPE",
    "VM_TYPE",
    "adapter_view",
    "drive_view",
    "vm_view",
    "vmhost_view",
]

VM_TYPE = "Microsoft.HyperV.PowerShell.VirtualMachine"
DRIVE_TYPE = "Microsoft.HyperV.PowerShell.HardDiskDrive"
ADAPTER_TYPE = "Microsoft.HyperV.PowerShell.VMNetworkAdapter"
_HV = "Microsoft.HyperV.PowerShell.Commands."
_UTIL = "Microsoft.PowerShell.Commands."
_NAME = ParamSpec(
    "Name", "string[]", position=0, mandatory=True, aliases=("VMName",), from_pipeline=True
)
_PASSTHRU = ParamSpec("Passthru", "switch")


def drive_view(host: HyperVHost, vm: VirtualMachine, drive: HardDiskDrive) -> PSObject:
    """``Get-VMHardDiskDrive``'s HardDiskDrive object (a documented subset of it)."""
    bus = drive.controller_type
    props: dict[str, Any] = {
        "Path": drive.path,
        "DiskNumber": None,
        "MaximumIOPS": 0,
        "MinimumIOPS": 0,
        "QoSPolicyID": "00000000-0000-0000-0000-000000000000",
        "SupportPersistentReservations": False,
        "ControllerLocation": drive.controller_location,
        "ControllerNumber": drive.controller_number,
        "ControllerType": PSEnum("Microsoft.HyperV.PowerShell.ControllerType", bus.name, int(bus)),
        "Name": "Hard Drive on "
        f"{bus.name} controller number {drive.controller_number} at location "
        f"{drive.controller_location}",
        "PoolName": "Primordial",
        "Id": f"Microsoft:{str(vm.id).upper()}\\{int(bus)}\\{drive.controller_number}"
        f"\\{drive.controller_location}\\D",
        "VMId": vm.id,
        "VMName": vm.name,
        "VMSnapshotId": "00000000-0000-0000-0000-000000000000",
        "VMSnapshotName": "",
        "ComputerName": host.name,
        "IsDeleted": False,
    }
    return PSObject(DRIVE_TYPE, props, ref=(vm.id, drive.slot))


def adapter_view(host: HyperVHost, vm: VirtualMachine, adapter: NetworkAdapter) -> PSObject:
    """``Get-VMNetworkAdapter``'s VMNetworkAdapter object (a documented subset of it)."""
    props: dict[str, Any] = {
        "Name": adapter.name,
        "Id": f"Microsoft:{str(vm.id).upper()}\\{str(adapter.id).upper()}",
        "IsLegacy": False,
        "IsManagementOs": False,
        "SwitchName": adapter.switch_name,
        "MacAddress": adapter.mac_address,
        "DynamicMacAddressEnabled": adapter.static_mac is None,
        "Connected": adapter.switch_name is not None,
        "Status": [],
        "IPAddresses": [],
        "VMName": vm.name,
        "VMId": vm.id,
        "ComputerName": host.name,
        "IsDeleted": False,
    }
    return PSObject(ADAPTER_TYPE, props, ref=(vm.id, adapter.id))


def vm_view(host: HyperVHost, vm: VirtualMachine) -> PSObject:
    """A snapshot of ``Get-VM``'s VirtualMachine object (a documented subset of it)."""
    running = vm.state not in (VMState.Off, VMState.Saved)
    props: dict[str, Any] = {
        "ConfigurationLocation": vm.path,
        "SmartPagingFileInUse": False,
        "SmartPagingFilePath": vm.path,
        "SnapshotFileLocation": vm.path,
        "CPUUsage": 0,
        "MemoryAssigned": vm.memory_startup if running else 0,
        "MemoryDemand": 0,
        "MemoryStatus": "",
        "Uptime": timespan(round(vm.uptime_seconds())),
        "Status": "Operating normally",
        "Version": vm.version,
        "Notes": vm.notes,
        "State": PSEnum("Microsoft.HyperV.PowerShell.VMState", vm.state.name, int(vm.state)),
        "NetworkAdapters": [adapter_view(host, vm, a) for a in vm.adapters],
        "HardDrives": [drive_view(host, vm, d) for d in vm.drives],
        "DVDDrives": [],
        "DynamicMemoryEnabled": False,
        "MemoryMaximum": 1024 * 1024 * MiB,
        "MemoryMinimum": min(vm.memory_startup, 512 * MiB),
        "MemoryStartup": vm.memory_startup,
        "ProcessorCount": vm.processor_count,
        "Generation": vm.generation,
        "IsClustered": False,
        "ParentSnapshotId": None,
        "ParentSnapshotName": None,
        "Path": vm.path,
        "CreationTime": vm.creation_time,
        "Id": vm.id,
        "Name": vm.name,
        "ComputerName": host.name,
        "IsDeleted": False,
        "VMName": vm.name,
        "VMId": vm.id,
    }
    view = ("Name", "State", "CPUUsage", "MemoryAssigned", "Uptime", "Status", "Version")
    return PSObject(VM_TYPE, props, ref=vm.id, view=view)


def vmhost_view(host: HyperVHost) -> PSObject:
    props: dict[str, Any] = {
        "ComputerName": host.name,
        "LogicalProcessorCount": host.logical_processor_count,
        "MemoryCapacity": host.memory_capacity,
        "Name": host.name,
        "FullyQualifiedDomainName": host.name,
        "VirtualHardDiskPath": host.virtual_hard_disk_path,
        "VirtualMachinePath": host.virtual_machine_path,
        "MacAddressMinimum": "00155D000000",
        "MacAddressMaximum": "00155D00FFFF",
        "MaximumStorageMigrations": 2,
        "MaximumVirtualMachineMigrations": 2,
        "VirtualMachineMigrationEnabled": host.migration_enabled,
        "NumaSpanningEnabled": True,
        "EnableEnhancedSessionMode": False,
        "ResourceMeteringSaveInterval": timespan(3600),
    }
    return PSObject("Microsoft.HyperV.PowerShell.VMHost", props)


# -- resolving the VMs a command acts on ---------------------------------------------


def _not_found(inv: Invocation, name: str) -> None:
    inv.write_error(
        inv.record(
            f'Hyper-V was unable to find a virtual machine with name "{name}".',
            "InvalidParameter",
            "InvalidArgument",
            "VirtualizationException",
            name,
            "String",
        )
    )


def _by_names(inv: Invocation, names: list[str]) -> list[VirtualMachine]:
    found: dict[uuid.UUID, VirtualMachine] = {}
    for name in names:
        matches = inv.host.find(name)
        if not matches and not has_wildcards(name):
            _not_found(inv, name)
        for vm in matches:
            found.setdefault(vm.id, vm)
    return list(found.values())


def _targets(inv: Invocation, inputs: list[Any], has_input: bool) -> list[VirtualMachine]:
    if not has_input:
        return _by_names(inv, inv.bound.get("Name", []))
    result: list[VirtualMachine] = []
    for item in inputs:
        if isinstance(item, PSObject) and item.type_name == VM_TYPE and "Name" not in inv.bound:
            vm = inv.host.vm(item.ref)
            if vm is None:
                _not_found(inv, to_display_string(item.props.get("Name")))
            else:
                result.append(vm)
        elif isinstance(item, (str, int)) and "Name" not in inv.bound:
            result.extend(_by_names(inv, [to_display_string(item)]))
        else:
            _input_not_bound(inv, item)
    return result


def _input_not_bound(inv: Invocation, item: Any) -> None:
    type_name = item.type_name if isinstance(item, PSObject) else type(item).__name__
    inv.write_error(
        inv.record(
            "The input object cannot be bound to any parameters for the command either because the command does "
            "not take pipeline input or the input and its properties do not match any of the parameters that take "
            "pipeline input.",
            "InputObjectNotBound",
            "InvalidArgument",
            "ParameterBindingException",
            to_display_string(item),
            type_name.rsplit(".", 1)[-1],
        )
    )


def _confirm_suppressed(inv: Invocation) -> bool:
    return bool(inv.bound.get("Force")) or inv.bound.get("Confirm") is False


def _require_no_prompt(inv: Invocation, question: str) -> None:
    if not _confirm_suppressed(inv):
        raise inv.terminate(
            inv.record(
                f"{question} Windows PowerShell would prompt for confirmation here, and a remote session cannot "
                "answer: pass -Force.",
                "HostFunctionNotImplemented",
                "NotImplemented",
                "HostException",
            )
        )


# -- cmdlet bodies -----------------------------------------------------------------------


def _get_vm(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    if has_input:
        vms = []
        for item in inputs:
            if isinstance(item, PSObject) and item.type_name == VM_TYPE:
                vm = inv.host.vm(item.ref)
                vms.extend([vm] if vm else [])
            elif isinstance(item, str):
                vms.extend(_by_names(inv, [item]))
            else:
                _input_not_bound(inv, item)
    elif "Id" in inv.bound:
        vm = inv.host.vm(inv.bound["Id"])
        if vm is None:
            vm_id = str(inv.bound["Id"])
            inv.write_error(
                inv.record(
                    f'Hyper-V was unable to find a virtual machine with id "{vm_id}".',
                    "InvalidParameter",
                    "InvalidArgument",
                    "VirtualizationException",
                    vm_id,
                    "Guid",
                )
            )
        vms = [vm] if vm else []
    elif "Name" in inv.bound:
        vms = _by_names(inv, inv.bound["Name"])
    else:
        vms = inv.host.vms()
    return [vm_view(inv.host, vm) for vm in vms]


def _new_vm(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    if "NewVHDPath" in b and "NewVHDSizeBytes" not in b:
        raise inv.terminate(
            inv.record(
                "Cannot process command because of one or more missing mandatory parameters: NewVHDSizeBytes.",
                "MissingMandatoryParameter",
                "InvalidArgument",
                "ParameterBindingException",
            )
        )
    vm = inv.host.new_vm(
        b.get("Name", "New Virtual Machine"),
        memory_startup=b.get("MemoryStartupBytes", 512 * MiB),
        generation=b.get("Generation", 1),
        path=b.get("Path"),
        switch_name=b.get("SwitchName"),
        new_vhd=(b["NewVHDPath"], b["NewVHDSizeBytes"]) if "NewVHDPath" in b else None,
        vhd_path=b.get("VHDPath"),
    )
    return [vm_view(inv.host, vm)]


def _state_cmdlet(operation: str) -> Any:
    def body(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
        if operation == "restart":
            _require_no_prompt(inv, "Are you sure you want to restart the virtual machine?")
        if operation == "remove":
            _require_no_prompt(inv, "Are you sure you want to remove the virtual machine?")
        out: list[Any] = []
        for vm in _targets(inv, inputs, has_input):
            try:
                inv.warnings(_apply(inv, operation, vm))
            except HyperVError as exc:
                inv.hyperv_error(exc)
                continue
            if inv.bound.get("Passthru") and operation != "remove":
                out.append(vm_view(inv.host, vm))
        return out

    return body


def _apply(inv: Invocation, operation: str, vm: VirtualMachine) -> list[str]:
    host, b = inv.host, inv.bound
    if operation == "start":
        return host.start(vm)
    if operation == "stop":
        return host.stop(vm, turn_off=bool(b.get("TurnOff")), save=bool(b.get("Save")))
    if operation == "suspend":
        return host.suspend(vm)
    if operation == "resume":
        return host.resume(vm)
    if operation == "save":
        return host.save(vm)
    if operation == "restart":
        return host.restart(vm, reboot=b.get("Type") == "Reboot")
    if operation == "remove":
        return host.remove(vm)
    return host.configure(
        vm,
        processor_count=b.get("ProcessorCount"),
        memory_startup=b.get("MemoryStartupBytes"),
        notes=b.get("Notes"),
        new_name=b.get("NewVMName"),
    )


def _get_vmhost(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    for item in inputs:
        _input_not_bound(inv, item)
    return [vmhost_view(inv.host)]


def _convert_to_json(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    objects = inputs if has_input else inv.bound.get("InputObject", [])
    if not has_input and len(objects) != 1:
        objects = [objects]
    objects = [o for o in objects if o is not None]
    text = convert_to_json(objects, inv.bound.get("Depth", 2), bool(inv.bound.get("Compress")))
    return [] if text is None else [text]


def _select_object(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    objects = inputs if has_input else inv.bound.get("InputObject", [])
    wanted = [to_display_string(p) for p in inv.bound.get("Property", [])]
    if "First" in inv.bound:
        objects = objects[: max(0, inv.bound["First"])]
    if not wanted:
        return list(objects)
    out: list[Any] = []
    for obj in objects:
        props = obj.props if isinstance(obj, PSObject) else {}
        selected: dict[str, Any] = {}
        for pattern in wanted:
            if has_wildcards(pattern):
                for key, value in props.items():
                    if wildcard_match(pattern, key):
                        selected.setdefault(key, value)
            else:
                key = next((k for k in props if k.lower() == pattern.lower()), pattern)
                selected.setdefault(key, props.get(key))
        out.append(custom_object(selected))
    return out


def _out_null(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    return []


def _spec(name: str, params: list[ParamSpec], body: Any, **kw: Any) -> CmdletSpec:
    return CmdletSpec(name, _HV + name.replace("-", ""), "Hyper-V", params, body, hyperv=True, **kw)


_INPUT = ParamSpec("InputObject", "object[]", position=0, mandatory=True, from_pipeline=True)

CMDLETS: dict[str, CmdletSpec] = {
    spec.name.lower(): spec
    for spec in [
        _spec(
            "Get-VM",
            [
                ParamSpec("Name", "string[]", position=0, aliases=("VMName",), from_pipeline=True),
                ParamSpec("Id", "guid", from_pipeline=True),
            ],
            _get_vm,
            exclusive=[("Name", "Id")],
        ),
        _spec(
            "New-VM",
            [
                ParamSpec("Name", "string", position=0, aliases=("VMName",)),
                ParamSpec("MemoryStartupBytes", "int64", position=1),
                ParamSpec("Generation", "int16", position=2, values=("1", "2")),
                ParamSpec("NoVHD", "switch"),
                ParamSpec("Path", "string"),
                ParamSpec("SwitchName", "string"),
                ParamSpec("NewVHDPath", "string"),
                ParamSpec("NewVHDSizeBytes", "int64", minimum=0),
                ParamSpec("VHDPath", "string"),
                ParamSpec("Force", "switch"),
            ],
            _new_vm,
            exclusive=[("NoVHD", "NewVHDPath", "VHDPath")],
            should_process=True,
        ),
        _spec(
            "Set-VM",
            [
                _NAME,
                ParamSpec("ProcessorCount", "int64"),
                ParamSpec("MemoryStartupBytes", "int64"),
                ParamSpec("Notes", "string"),
                ParamSpec("NewVMName", "string"),
                _PASSTHRU,
            ],
            _state_cmdlet("configure"),
            should_process=True,
        ),
        _spec("Start-VM", [_NAME, _PASSTHRU], _state_cmdlet("start"), should_process=True),
        _spec(
            "Stop-VM",
            [
                _NAME,
                ParamSpec("Save", "switch"),
                ParamSpec("TurnOff", "switch"),
                ParamSpec("Force", "switch"),
                _PASSTHRU,
            ],
            _state_cmdlet("stop"),
            exclusive=[("Save", "TurnOff")],
            should_process=True,
        ),
        _spec("Suspend-VM", [_NAME, _PASSTHRU], _state_cmdlet("suspend"), should_process=True),
        _spec("Resume-VM", [_NAME, _PASSTHRU], _state_cmdlet("resume"), should_process=True),
        _spec("Save-VM", [_NAME, _PASSTHRU], _state_cmdlet("save"), should_process=True),
        _spec(
            "Restart-VM",
            [
                _NAME,
                ParamSpec("Force", "switch"),
                _PASSTHRU,
                ParamSpec(
                    "Type",
                    "enum",
                    values=("Reset", "Reboot"),
                    enum_type="Microsoft.HyperV.PowerShell.Commands.RestartVM+RestartType",
                ),
            ],
            _state_cmdlet("restart"),
            should_process=True,
        ),
        _spec(
            "Remove-VM",
            [_NAME, ParamSpec("Force", "switch")],
            _state_cmdlet("remove"),
            should_process=True,
        ),
        _spec("Get-VMHost", [], _get_vmhost),
        CmdletSpec(
            "ConvertTo-Json",
            _UTIL + "ConvertToJsonCommand",
            "Microsoft.PowerShell.Utility",
            [_INPUT, ParamSpec("Depth", "int32", minimum=1), ParamSpec("Compress", "switch")],
            _convert_to_json,
        ),
        CmdletSpec(
            "Select-Object",
            _UTIL + "SelectObjectCommand",
            "Microsoft.PowerShell.Utility",
            [
                ParamSpec("Property", "object[]", position=0),
                ParamSpec("First", "int32", minimum=0),
                ParamSpec("InputObject", "object[]", from_pipeline=True),
            ],
            _select_object,
        ),
        CmdletSpec(
            "Out-Null",
            _UTIL + "OutNullCommand",
            "Microsoft.PowerShell.Core",
            [ParamSpec("InputObject", "object[]", from_pipeline=True)],
            _out_null,
        ),
    ]
}
CMDLETS["select"] = CMDLETS["select-object"]
