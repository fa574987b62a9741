"""Checkpoints, VHD conversion, file moves, COM ports and the VMConnect port.

Parameters follow Microsoft's reference for the Hyper-V module
(``Checkpoint-VM``, ``Get-VMSnapshot``, ``Remove-VMSnapshot``, ``Convert-VHD``,
``Get-VMComPort``, ``Set-VMComPort``), ``Move-Item`` and ``Get-CimInstance``,
restricted to what a driver needs; parameters not modelled fail as
NamedParameterNotFound. ``Get-CimInstance`` knows one class:
``Msvm_TerminalServiceSettingData`` of ``root\\virtualization\\v2``, whose
``ListenerPort`` is where VMConnect (RDP to a VM's console) listens.
"""

from __future__ import annotations

import uuid
from typing import Any

from .cmdlets import VM_TYPE, _input_not_bound, _targets, drive_view
from .devcmdlets import _hv, _vms, vhd_view
from .hyperv import Checkpoint, HyperVHost, VhdType, VirtualMachine, has_wildcards, wildcard_match
from .psbind import CmdletSpec, ParamSpec
from .psobjects import PSEnum, PSObject
from .psruntime import Invocation

__all__ = ["IMAGE_CMDLETS", "SNAPSHOT_TYPE", "snapshot_view"]

SNAPSHOT_TYPE = "Microsoft.HyperV.PowerShell.VMSnapshot"
_COM_PORT_TYPE = "Microsoft.HyperV.PowerShell.VMComPort"
_CIM_NAMESPACE = "root\\virtualization\\v2"
_TERMINAL_SERVICE = "Msvm_TerminalServiceSettingData"
_VHD = "Microsoft.Vhd.PowerShell.Cmdlets."
_CIM = "Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand"


def snapshot_view(host: HyperVHost, vm: VirtualMachine, checkpoint: Checkpoint) -> PSObject:
    """``Get-VMSnapshot``'s VMSnapshot object (a documented subset of it)."""
    parent = next((c for c in vm.checkpoints if c.id == checkpoint.parent_id), None)
    drives = []
    for drive in checkpoint.drives:
        view = drive_view(host, vm, drive)
        view.props.update(VMSnapshotId=checkpoint.id, VMSnapshotName=checkpoint.name)
        drives.append(view)
    props: dict[str, Any] = {
        "Id": checkpoint.id,
        "Name": checkpoint.name,
        "SnapshotType": PSEnum("Microsoft.HyperV.PowerShell.SnapshotType", "Standard", 0),
        "CreationTime": checkpoint.creation_time,
        "ParentSnapshotId": parent.id if parent else None,
        "ParentSnapshotName": parent.name if parent else None,
        "HardDrives": drives,
        "Notes": vm.notes,
        "Path": vm.path,
        "State": PSEnum("Microsoft.HyperV.PowerShell.VMState", "Off", 3),
        "VMId": vm.id,
        "VMName": vm.name,
        "ComputerName": host.name,
        "IsDeleted": False,
    }
    view_props = ("VMName", "Name", "SnapshotType", "CreationTime", "ParentSnapshotName")
    return PSObject(SNAPSHOT_TYPE, props, ref=checkpoint.id, view=view_props)


def _com_port_view(host: HyperVHost, vm: VirtualMachine, number: int) -> PSObject:
    props: dict[str, Any] = {
        "Path": vm.com_ports[number - 1],
        "DebuggerMode": PSEnum("Microsoft.HyperV.PowerShell.OnOffState", "Off", 1),
        "Name": f"COM {number}",
        "Id": f"Microsoft:{str(vm.id).upper()}\\{number}",
        "VMId": vm.id,
        "VMName": vm.name,
        "VMSnapshotId": "00000000-0000-0000-0000-000000000000",
        "VMSnapshotName": "",
        "ComputerName": host.name,
        "IsDeleted": False,
    }
    return PSObject(_COM_PORT_TYPE, props, ref=(vm.id, number), view=("VMName", "Name", "Path"))


# -- checkpoints ------------------------------------------------------------------------


def _checkpoint_vm(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    out = []
    for vm in _targets(inv, inputs, has_input):
        checkpoint = inv.host.checkpoint(vm, inv.bound.get("SnapshotName"))
        if inv.bound.get("Passthru"):
            out.append(snapshot_view(inv.host, vm, checkpoint))
    return out


def _named_checkpoints(
    inv: Invocation, vms: list[VirtualMachine], names: list[str] | None
) -> list[tuple[VirtualMachine, Checkpoint]]:
    found = []
    for vm in vms:
        for pattern in names or ["*"]:
            matches = [c for c in vm.checkpoints if wildcard_match(pattern, c.name)]
            if not matches and not has_wildcards(pattern):
                _checkpoint_not_found(inv, "name", pattern)
            found.extend((vm, c) for c in matches if (vm, c) not in found)
    return found


def _checkpoint_not_found(inv: Invocation, key: str, value: str) -> None:
    inv.write_error(
        inv.record(
            f'Hyper-V was unable to find a virtual machine checkpoint with {key} "{value}".',
            "InvalidParameter",
            "InvalidArgument",
            "VirtualizationException",
            value,
            "String" if key == "name" else "Guid",
        )
    )


def _get_snapshot(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    if "Id" in inv.bound:
        found = inv.host.find_checkpoint(inv.bound["Id"])
        if found is None:
            _checkpoint_not_found(inv, "id", str(inv.bound["Id"]))
            return []
        return [snapshot_view(inv.host, *found)]
    if not has_input and "VMName" not in inv.bound:
        raise inv.terminate(
            inv.record(
                "Cannot process command because of one or more missing mandatory parameters: "
                "VMName.",
                "MissingMandatoryParameter",
                "InvalidArgument",
                "ParameterBindingException",
            )
        )
    pairs = _named_checkpoints(inv, _vms(inv, inputs, has_input), inv.bound.get("Name"))
    return [snapshot_view(inv.host, vm, c) for vm, c in pairs]


def _remove_snapshot(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    pairs: list[tuple[VirtualMachine, Checkpoint]] = []
    vm_inputs = []
    for item in inputs:
        if isinstance(item, PSObject) and item.type_name == SNAPSHOT_TYPE:
            found = inv.host.find_checkpoint(item.ref)
            if found is None:
                _checkpoint_not_found(inv, "id", str(item.ref))
            else:
                pairs.append(found)
        elif isinstance(item, PSObject) and item.type_name == VM_TYPE:
            vm_inputs.append(item)
        else:
            _input_not_bound(inv, item)
    if vm_inputs or not has_input:
        vms = _vms(inv, vm_inputs, bool(vm_inputs))
        pairs.extend(_named_checkpoints(inv, vms, inv.bound.get("Name")))
    out = []
    for vm, checkpoint in pairs:
        inv.host.remove_checkpoint(vm, checkpoint)
        if inv.bound.get("Passthru"):
            out.append(snapshot_view(inv.host, vm, checkpoint))
    return out


# -- files --------------------------------------------------------------------------------


def _convert_vhd(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    kind = b.get("VHDType")
    vhd_type = None if kind in (None, "Unknown") else VhdType[kind]
    disk = inv.host.convert_vhd(b["Path"], b["DestinationPath"], vhd_type)
    return [vhd_view(inv.host, disk)] if b.get("Passthru") else []


def _move_item(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    for path in inv.bound["Path"]:
        inv.host.move_file(path, inv.bound["Destination"])
    return []


# -- consoles ----------------------------------------------------------------------------


def _get_com_port(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    number = inv.bound.get("Number")
    out = []
    for vm in _vms(inv, inputs, has_input):
        for n in range(1, len(vm.com_ports) + 1):
            if number is None or number == n:
                out.append(_com_port_view(inv.host, vm, n))
    return out


def _set_com_port(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    b = inv.bound
    out = []
    for vm in _vms(inv, inputs, has_input):
        inv.host.set_com_port(vm, b["Number"], b.get("Path", ""))
        if b.get("Passthru"):
            out.append(_com_port_view(inv.host, vm, b["Number"]))
    return out


def _get_cim_instance(inv: Invocation, inputs: list[Any], has_input: bool) -> list[Any]:
    namespace = inv.bound.get("Namespace", "root\\cimv2")
    class_name = inv.bound["ClassName"]
    if namespace.lower() != _CIM_NAMESPACE:
        raise inv.terminate(_cim_error(inv, "Invalid namespace ", "0x8004100e", namespace))
    if class_name.lower() != _TERMINAL_SERVICE.lower():
        raise inv.terminate(_cim_error(inv, "Invalid class ", "0x80041010", class_name))
    props: dict[str, Any] = {
        "Caption": "Terminal Service Settings",
        "Description": "Settings for the Microsoft Hyper-V Terminal Service",
        "ElementName": "Microsoft Hyper-V Terminal Service Settings",
        "InstanceID": "Microsoft:" + str(uuid.uuid5(uuid.NAMESPACE_URL, inv.host.name)).upper(),
        "AuthCertificateHash": "",
        "DisableSelfSignedCertificateGeneration": False,
        "ListenerPort": inv.host.vmconnect_port,
        "PSComputerName": None,
    }
    type_name = (
        f"Microsoft.Management.Infrastructure.CimInstance#{_CIM_NAMESPACE}/{_TERMINAL_SERVICE}"
    )
    return [PSObject(type_name, props)]


def _cim_error(inv: Invocation, message: str, hresult: str, target: str) -> Any:
    return inv.record(
        message,
        f"HRESULT {hresult}",
        "ObjectNotFound" if hresult == "0x80041010" else "MetadataError",
        "CimException",
        target,
        "String",
    )


# -- specs ----------------------------------------------------------------------------------

_PASSTHRU = ParamSpec("Passthru", "switch")
_VMNAME = ParamSpec("VMName", "string[]", position=0, from_pipeline=True)


IMAGE_CMDLETS: dict[str, CmdletSpec] = {
    spec.name.lower(): spec
    for spec in [
        _hv(
            "Checkpoint-VM",
            [
                ParamSpec(
                    "Name",
                    "string[]",
                    position=0,
                    mandatory=True,
                    aliases=("VMName",),
                    from_pipeline=True,
                ),
                ParamSpec("SnapshotName", "string", position=1, aliases=("CheckpointName",)),
                _PASSTHRU,
            ],
            _checkpoint_vm,
            should_process=True,
        ),
        _hv(
            "Get-VMSnapshot",
            [_VMNAME, ParamSpec("Name", "string[]", position=1), ParamSpec("Id", "guid")],
            _get_snapshot,
            exclusive=[("VMName", "Id"), ("Name", "Id")],
        ),
        _hv(
            "Remove-VMSnapshot",
            [_VMNAME, ParamSpec("Name", "string[]", position=1), _PASSTHRU],
            _remove_snapshot,
            should_process=True,
        ),
        CmdletSpec(
            "Convert-VHD",
            _VHD + "ConvertVHD",
            "Hyper-V",
            [
                ParamSpec("Path", "string", position=0, mandatory=True, aliases=("FullName",)),
                ParamSpec("DestinationPath", "string", position=1, mandatory=True),
                ParamSpec(
                    "VHDType",
                    "enum",
                    values=("Unknown", "Fixed", "Dynamic", "Differencing"),
                    enum_type="Microsoft.Vhd.PowerShell.VhdType",
                ),
                _PASSTHRU,
            ],
            _convert_vhd,
            hyperv=True,
            should_process=True,
        ),
        _hv(
            "Get-VMComPort",
            [
                ParamSpec("VMName", "string[]", position=0, mandatory=True, from_pipeline=True),
                ParamSpec("Number", "int32", position=1),
            ],
            _get_com_port,
        ),
        _hv(
            "Set-VMComPort",
            [
                ParamSpec("VMName", "string[]", position=0, mandatory=True, from_pipeline=True),
                ParamSpec("Number", "int32", position=1, mandatory=True),
                ParamSpec("Path", "string", position=2),
                _PASSTHRU,
            ],
            _set_com_port,
            should_process=True,
        ),
        CmdletSpec(
            "Move-Item",
            "Microsoft.PowerShell.Commands.MoveItemCommand",
            "Microsoft.PowerShell.Management",
            [
                ParamSpec("Path", "string[]", position=0, mandatory=True),
                ParamSpec("Destination", "string", position=1, mandatory=True),
            ],
            _move_item,
            should_process=True,
        ),
        CmdletSpec(
            "Get-CimInstance",
            _CIM,
            "CimCmdlets",
            [
                ParamSpec("ClassName", "string", position=0, mandatory=True),
                ParamSpec("Namespace", "string"),
            ],
            _get_cim_instance,
        ),
    ]
}
