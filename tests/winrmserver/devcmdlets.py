"""The device cmdlets: VHD files, hard disk drives, network adapters, switches, the iSCSI initiator.

Parameters follow Microsoft's reference for the Hyper-V module (``*-VHD``,
``*-VMHardDiskDrive``, ``*-VMNetworkAdapter``, ``Get-VMSwitch``), the Storage
module (``Get-InitiatorPort``) and ``Remove-Item``, restricted to what a driver
needs; parameters not modelled fail as NamedParameterNotFound. A VM is named
with ``-VMName`` or piped from ``Get-VM``; drives and adapters are piped from
their ``Get-*`` cmdlet into ``Remove-*``, as Hyper-V binds them.
"""

from __future__ import annotations

import uuid
from typing import Any

from .cmdlets import (
    ADAPTER_TYPE,
    DRIVE_TYPE,
    VM_TYPE,
    _by_names,
    _input_not_bound,
    _not_found,
    adapter_view,
    drive_view,
)
from .hyperv import (
    ControllerType,
    HyperVHost,
    VhdType,
    VirtualHardDisk,
    VirtualMachine,
    has_wildcards,
    wildcard_match,
)
from .psbind import CmdletSpec, ParamSpec
from .psobjects import PSEnum, PSObject
from .psruntime import Invocation

__all__ = ["DEVICE_CMDLETS", "vhd_view"]

_HV = "Microsoft.HyperV.PowerShell.Commands."
_VHD = "Microsoft.Vhd.PowerShell.Cmdlets."
_INITIATOR_TYPE = (
    "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/"
    "MSFT_InitiatorPort"
)
#: MSFT_InitiatorPort.ConnectionType.
_CONNECTION_TYPES = {"Other": 0, "FibreChannel": 1, "iSCSI": 2, "SAS": 3}


def vhd_view(host: HyperVHost, disk: VirtualHardDisk) -> PSObject:
    """``Get-VHD``'s VirtualHardDisk object."""
    attached = host._attached_to(disk.path) is not None
    props: dict[str, Any] = {
        "ComputerName": host.name,
        "Path": disk.path,
        "VhdFormat": PSEnum("Microsoft.Vhd.PowerShell.VhdFormat", disk.format.name, disk.format),
        "VhdType": PSEnum("Microsoft.Vhd.PowerShell.VhdType", disk.type.name, disk.type),
        "FileSize": 4 * 1024 * 1024 if disk.type != VhdType.Fixed else disk.size,
        "Size": disk.size,
        "MinimumSize": disk.size if disk.minimum_size is None else disk.minimum_size,
        "LogicalSectorSize": 512,
        "PhysicalSectorSize": 4096,
        "BlockSize": 0 if disk.type == VhdType.Fixed else 32 * 1024 * 1024,
        "ParentPath": disk.parent_path or "",
        "DiskIdentifier": str(disk.disk_identifier).upper(),
        "FragmentationPercentage": 0,
        "Alignment": 1,
        "Attached": attached,
        "DiskNumber": None,
        "IsPMEMCompatible": False,
        "AddressAbstractionType": 0,
        "Number": None,
    }
    return PSObject("Microsoft.Vhd.PowerShell.VirtualHardDisk", props, ref=disk.path)


def _switch_view(host: HyperVHost, name: str) -> PSObject:
    props: dict[str, Any] = {
        "Name": name,
        "Id": _stable_id(host.name + name),
        "SwitchType": PSEnum("Microsoft.HyperV.PowerShell.VMSwitchType", "Internal", 1),
        "AllowManagementOS": True,
        "NetAdapterInterfaceDescription": "",
        "ComputerName": host.name,
        "IsDeleted": False,
    }
    return PSObject("Microsoft.HyperV.PowerShell.VMSwitch", props)


def _stable_id(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, text))


# -- resolving targets -------------------------------------------------------------------


def _vms(inv: Invocation, inputs: list[Any], has_input: bool) -> list[VirtualMachine]:
    """The VMs a command acts on: ``-VMName`` or VirtualMachine objects from the pipeline."""
    if not has_input or "VMName" in inv.bound:
        return _by_names(inv, inv.bound.get("VMName", []))
    result = []
    for item in inputs:
        if isinstance(item, PSObject) and item.type_name == VM_TYPE:
            vm = inv.host.vm(item.ref)
            if vm is None:
                _not_found(inv, str(item.props.get("Name")))
            else:
                result.append(vm)
        else:
            _input_not_bound(inv, item)
    return result


def _piped(inv: Invocation, inputs: list[Any], type_name: str) -> list[tuple[VirtualMachine, Any]]:
    """(VM, ref) of each drive or adapter object piped in."""
    found = []
    for item in inputs:
        if not (isinstance(item, PSObject) and item.type_name == type_name):
            _input_not_bound(inv, item)
            continue
        vm = inv.host.vm(item.ref[0])
        if vm is None:
            _not_found(inv, str(item.props.get("VMName")))
            continue
        found.append((vm, item.ref[1]))
    return found


def _bus(value: str | None) -> ControllerType | None:
    return None if value is None else ControllerType[value]


# -- VHD files ------------------------------------------------------------------------------


def _get_vhd(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    paths = list(inv.bound.get("Path", [])) + [i for i in inputs if isinstance(i, str)]
    return [vhd_view(inv.host, inv.host.get_vhd(path)) for path in paths]


def _new_vhd(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    parent = b.get("ParentPath")
    if parent is None and "SizeBytes" not in b:
        raise inv.terminate(
            inv.record(
                "Cannot process command because of one or more missing mandatory parameters: "
                "SizeBytes.",
                "MissingMandatoryParameter",
                "InvalidArgument",
                "ParameterBindingException",
            )
        )
    if parent is None and b.get("Differencing"):
        raise inv.terminate(
            inv.record(
                "Cannot process command because of one or more missing mandatory parameters: "
                "ParentPath.",
                "MissingMandatoryParameter",
                "InvalidArgument",
                "ParameterBindingException",
            )
        )
    if parent is not None:
        kind = VhdType.Differencing
    else:
        kind = VhdType.Fixed if b.get("Fixed") else VhdType.Dynamic
    disk = inv.host.new_vhd(b["Path"], b.get("SizeBytes"), kind, parent)
    return [vhd_view(inv.host, disk)]


def _resize_vhd(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    out = []
    for path in inv.bound["Path"]:
        disk = inv.host.resize_vhd(path, inv.bound["SizeBytes"])
        if inv.bound.get("Passthru"):
            out.append(vhd_view(inv.host, disk))
    return out


def _remove_item(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    for path in inv.bound["Path"]:
        inv.host.remove_file(path)
    return []


# -- hard disk drives -------------------------------------------------------------------------


def _get_drives(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    bus, number = _bus(b.get("ControllerType")), b.get("ControllerNumber")
    location = b.get("ControllerLocation")
    out = []
    for vm in _vms(inv, inputs, has_input):
        for drive in sorted(vm.drives, key=lambda d: d.slot):
            if bus is not None and drive.controller_type != bus:
                continue
            if number is not None and drive.controller_number != number:
                continue
            if location is not None and drive.controller_location != location:
                continue
            out.append(drive_view(inv.host, vm, drive))
    return out


def _add_drive(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    out = []
    for vm in _vms(inv, inputs, has_input):
        drive = inv.host.add_drive(
            vm,
            b.get("Path", ""),
            _bus(b.get("ControllerType")),
            b.get("ControllerNumber"),
            b.get("ControllerLocation"),
        )
        if b.get("Passthru"):
            out.append(drive_view(inv.host, vm, drive))
    return out


def _remove_drive(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    if has_input and "VMName" not in b:
        targets = _piped(inv, inputs, DRIVE_TYPE)
    else:
        slot = (
            _bus(b.get("ControllerType")),
            b.get("ControllerNumber"),
            b.get("ControllerLocation"),
        )
        if None in slot:
            raise inv.terminate(
                inv.record(
                    "Cannot process command because of one or more missing mandatory parameters: "
                    "ControllerType ControllerNumber ControllerLocation.",
                    "MissingMandatoryParameter",
                    "InvalidArgument",
                    "ParameterBindingException",
                )
            )
        targets = [(vm, slot) for vm in _by_names(inv, b.get("VMName", []))]
    for vm, slot in targets:
        drive = next((d for d in vm.drives if d.slot == tuple(slot)), None)
        if drive is None:
            inv.write_error(
                inv.record(
                    f"Hyper-V was unable to find a hard disk drive at {slot[0].name} controller "
                    f'{slot[1]} location {slot[2]} on virtual machine "{vm.name}".',
                    "ObjectNotFound",
                    "ObjectNotFound",
                    "VirtualizationException",
                    vm.name,
                    "String",
                )
            )
            continue
        inv.host.remove_drive(vm, drive)
    return []


# -- network adapters ---------------------------------------------------------------------------


def _get_adapters(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    pattern = inv.bound.get("Name")
    out = []
    for vm in _vms(inv, inputs, has_input):
        for adapter in vm.adapters:
            if pattern is None or wildcard_match(pattern, adapter.name):
                out.append(adapter_view(inv.host, vm, adapter))
    return out


def _add_adapter(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    out = []
    for vm in _vms(inv, inputs, has_input):
        adapter = inv.host.add_adapter(
            vm, b.get("Name", "Network Adapter"), b.get("SwitchName"), b.get("StaticMacAddress")
        )
        if b.get("Passthru"):
            out.append(adapter_view(inv.host, vm, adapter))
    return out


def _remove_adapters(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    if has_input and "VMName" not in b:
        targets = [
            (vm, adapter)
            for vm, adapter_id in _piped(inv, inputs, ADAPTER_TYPE)
            for adapter in vm.adapters
            if adapter.id == adapter_id
        ]
    else:
        name = b.get("Name")
        if name is None:
            raise inv.terminate(
                inv.record(
                    "Cannot process command because of one or more missing mandatory parameters: "
                    "Name.",
                    "MissingMandatoryParameter",
                    "InvalidArgument",
                    "ParameterBindingException",
                )
            )
        targets = []
        for vm in _by_names(inv, b.get("VMName", [])):
            matches = [a for a in vm.adapters if wildcard_match(name, a.name)]
            if not matches and not has_wildcards(name):
                inv.write_error(
                    inv.record(
                        f'Hyper-V was unable to find a network adapter with name "{name}" on '
                        f'virtual machine "{vm.name}".',
                        "ObjectNotFound",
                        "ObjectNotFound",
                        "VirtualizationException",
                        name,
                        "String",
                    )
                )
            targets.extend((vm, a) for a in matches)
    for vm, adapter in targets:
        inv.host.remove_adapter(vm, adapter)
    return []


def _get_switch(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    names = inv.bound.get("Name")
    if names is None:
        return [_switch_view(inv.host, s) for s in inv.host.switches]
    out = []
    for pattern in names:
        if not has_wildcards(pattern):
            out.append(_switch_view(inv.host, inv.host.check_switch(pattern)))
            continue
        out.extend(
            _switch_view(inv.host, s) for s in inv.host.switches if wildcard_match(pattern, s)
        )
    return out


def _get_initiator_port(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    wanted = inv.bound.get("ConnectionType")
    host = inv.host
    port = PSObject(
        _INITIATOR_TYPE,
        {
            "InstanceName": "ROOT\\ISCSIPRT\\0000_0",
            "NodeAddress": host.iscsi_initiator,
            "PortAddress": "ISCSI ANY PORT",
            "ConnectionType": _CONNECTION_TYPES["iSCSI"],
            "OtherConnectionTypeDescription": None,
            "OperationalStatus": [],
            "PortType": 0,
            "ObjectId": "{1}\\\\" + host.name + "\\ROOT/Microsoft/Windows/Storage/Providers_v2",
            "PSComputerName": None,
        },
    )
    if wanted in (None, "iSCSI"):
        return [port]
    inv.write_error(
        inv.record(
            f"No MSFT_InitiatorPort objects found with property 'ConnectionType' equal to "
            f"'{wanted}'.  Verify the value of the property and retry.",
            "CmdletizationQuery_NotFound_ConnectionType",
            "ObjectNotFound",
            "CimJobException",
            wanted,
            "ConnectionType",
        )
    )
    return []


# -- specs ------------------------------------------------------------------------------------------

_VMNAME = ParamSpec("VMName", "string[]", position=0, mandatory=True, from_pipeline=True)
_PASSTHRU = ParamSpec("Passthru", "switch")
_BUS = ParamSpec(
    "ControllerType",
    "enum",
    position=1,
    values=("IDE", "SCSI"),
    enum_type="Microsoft.HyperV.PowerShell.ControllerType",
)
_NUMBER = ParamSpec("ControllerNumber", "int32", position=2, minimum=0)
_LOCATION = ParamSpec("ControllerLocation", "int32", position=3, minimum=0)


def _hv(name: str, params: list[ParamSpec], body: Any, **kw: Any) -> CmdletSpec:
    return CmdletSpec(name, _HV + name.replace("-", ""), "Hyper-V", params, body, hyperv=True, **kw)


def _vhd(name: str, params: list[ParamSpec], body: Any, **kw: Any) -> CmdletSpec:
    return CmdletSpec(
        name, _VHD + name.replace("-", ""), "Hyper-V", params, body, hyperv=True, **kw
    )


DEVICE_CMDLETS: dict[str, CmdletSpec] = {
    spec.name.lower(): spec
    for spec in [
        _vhd(
            "Get-VHD",
            [ParamSpec("Path", "string[]", position=0, mandatory=True, from_pipeline=True)],
            _get_vhd,
        ),
        _vhd(
            "New-VHD",
            [
                ParamSpec("Path", "string", position=0, mandatory=True),
                ParamSpec("SizeBytes", "int64", position=1, minimum=1),
                ParamSpec("ParentPath", "string"),
                ParamSpec("Dynamic", "switch"),
                ParamSpec("Fixed", "switch"),
                ParamSpec("Differencing", "switch"),
            ],
            _new_vhd,
            exclusive=[("Dynamic", "Fixed", "Differencing"), ("Fixed", "ParentPath")],
            should_process=True,
        ),
        _vhd(
            "Resize-VHD",
            [
                ParamSpec("Path", "string[]", position=0, mandatory=True),
                ParamSpec("SizeBytes", "int64", position=1, mandatory=True, minimum=1),
                _PASSTHRU,
            ],
            _resize_vhd,
            should_process=True,
        ),
        _hv(
            "Get-VMHardDiskDrive",
            [_VMNAME, _BUS, _NUMBER, _LOCATION],
            _get_drives,
        ),
        _hv(
            "Add-VMHardDiskDrive",
            [
                _VMNAME,
                _BUS,
                _NUMBER,
                _LOCATION,
                ParamSpec("Path", "string", position=4),
                _PASSTHRU,
            ],
            _add_drive,
            should_process=True,
        ),
        _hv(
            "Remove-VMHardDiskDrive",
            [
                ParamSpec("VMName", "string[]", position=0, from_pipeline=True),
                _BUS,
                _NUMBER,
                _LOCATION,
                _PASSTHRU,
            ],
            _remove_drive,
            should_process=True,
        ),
        _hv(
            "Get-VMNetworkAdapter",
            [_VMNAME, ParamSpec("Name", "string")],
            _get_adapters,
        ),
        _hv(
            "Add-VMNetworkAdapter",
            [
                _VMNAME,
                ParamSpec("SwitchName", "string"),
                ParamSpec("Name", "string"),
                ParamSpec("StaticMacAddress", "string"),
                _PASSTHRU,
            ],
            _add_adapter,
            should_process=True,
        ),
        _hv(
            "Remove-VMNetworkAdapter",
            [
                ParamSpec("VMName", "string[]", position=0, from_pipeline=True),
                ParamSpec("Name", "string", position=1),
                _PASSTHRU,
            ],
            _remove_adapters,
            should_process=True,
        ),
        _hv("Get-VMSwitch", [ParamSpec("Name", "string[]", position=0)], _get_switch),
        CmdletSpec(
            "Get-InitiatorPort",
            "Get-InitiatorPort",
            "Storage",
            [
                ParamSpec(
                    "ConnectionType",
                    "enum",
                    values=tuple(_CONNECTION_TYPES),
                    enum_type="Microsoft.PowerShell.Cmdletization.GeneratedTypes.InitiatorPort."
                    "ConnectionType",
                )
            ],
            _get_initiator_port,
        ),
        CmdletSpec(
            "Remove-Item",
            "Microsoft.PowerShell.Commands.RemoveItemCommand",
            "Microsoft.PowerShell.Management",
            [
                ParamSpec("Path", "string[]", position=0, mandatory=True),
                ParamSpec("Force", "switch"),
            ],
            _remove_item,
            should_process=True,
        ),
    ]
}
