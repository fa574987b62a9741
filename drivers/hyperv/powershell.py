"""The PowerShell this driver runs: a small fixed vocabulary, and how to read its output.

Every script is built here from a template. A string argument only ever
enters a script through :func:`quote`, as a single-quoted literal (which
PowerShell never expands) with every quote character doubled -- including
the typographic ones PowerShell also accepts as quotes -- after validation
(GUIDs must be GUIDs, names are length-limited). Integers are rendered from
Python ints. Every script stops at the first error
(``$ErrorActionPreference = 'Stop'``), and every result is converted with
``ConvertTo-Json -Compress`` and parsed by :func:`parse_objects`.

VMs are always addressed by their Hyper-V Id (``Get-VM -Id '<guid>' | ...``),
never by name: names may repeat on Hyper-V and are wildcard patterns to the
cmdlets.
"""

from __future__ import annotations

import json
import re
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from drivers.hyperv import constants

__all__ = [
    "ACTIONS",
    "PowerShellError",
    "Script",
    "add_adapter",
    "add_drive",
    "checkpoint_vm",
    "destroy_vm",
    "export_disk",
    "get_com_port",
    "get_vmconnect_port",
    "list_vm_states",
    "remove_checkpoint",
    "remove_checkpoints",
    "remove_files_if_present",
    "set_com_port",
    "vm_action",
    "get_host",
    "get_iscsi_initiator",
    "get_vhd",
    "get_vm",
    "guid",
    "list_vms",
    "new_vm",
    "parse_error",
    "parse_objects",
    "quote",
    "remove_adapter",
    "remove_all_adapters",
    "remove_drive",
    "remove_files",
    "resize_vhd",
    "new_vhd",
    "set_notes",
    "vm_actions",
    "vm_devices",
    "vm_name",
]

_PREAMBLE = "$ErrorActionPreference = 'Stop'"
#: Depth 3 reaches the properties of a VM's drives and adapters, also when
#: several VMs come as an array (which takes one level).
_JSON = "ConvertTo-Json -Depth 3 -Compress"
#: The VM properties the driver reads, its hard drives and network adapters included.
VM_PROPERTIES = (
    "Id",
    "Name",
    "State",
    "Notes",
    "ProcessorCount",
    "MemoryStartup",
    "Generation",
    "HardDrives",
    "NetworkAdapters",
)
HOST_PROPERTIES = ("Name", "LogicalProcessorCount", "MemoryCapacity", "VirtualHardDiskPath")
_SELECT_VHD = "Select-Object -Property Path,VhdFormat,VhdType,Size,FileSize"
_SELECT_VM = "Select-Object -Property " + ",".join(VM_PROPERTIES)
_SELECT_HOST = "Select-Object -Property " + ",".join(HOST_PROPERTIES)
#: What a poll of the host's VMs reads: enough for the contract's power state.
_SELECT_STATE = "Select-Object -Property Id,State,Notes"

# PowerShell's tokenizer takes any of these as a single quote, and a doubled
# one as a literal quote inside a single-quoted string.
_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_LITERAL = 8192

#: Lifecycle actions on one VM: the cmdlet and switches each runs. -Force
#: because a remote session cannot answer a confirmation prompt.
ACTIONS: dict[str, str] = {
    "start": "Start-VM",
    "turn_off": "Stop-VM -TurnOff -Force",
    "pause": "Suspend-VM",
    "unpause": "Resume-VM",
    "save": "Save-VM",
    "reset": "Restart-VM -Force",
    "reboot": "Restart-VM -Force -Type Reboot",
    "remove": "Remove-VM -Force",
}


@dataclass(frozen=True)
class Script:
    """A script to run: ``name`` for logs and errors, ``text`` for PowerShell."""

    name: str
    text: str


class PowerShellError(Exception):
    """A script ended with a non-zero exit code; the error as PowerShell rendered it."""

    def __init__(self, script: str, message: str, error_id: str, category: str) -> None:
        super().__init__(f"{script}: {message} ({error_id or 'no error id'})")
        self.script = script
        self.message = message
        #: FullyQualifiedErrorId, e.g. ``InvalidState,Microsoft.HyperV.PowerShell.Commands.StartVM``.
        self.error_id = error_id
        #: CategoryInfo, e.g. ``InvalidOperation: (:) [Start-VM], VirtualizationException``.
        self.category = category

    @property
    def short_id(self) -> str:
        """The error id without the command class: ``InvalidState``, ``CommandNotFoundException``."""
        return self.error_id.split(",", 1)[0]


# Arguments ------------------------------------------------------------------


def quote(value: str) -> str:
    """``value`` as a single-quoted PowerShell literal; nothing in it is expanded.

    :raises ValueError: for NUL or an implausibly long value.
    """
    if not isinstance(value, str):
        raise TypeError(f"quote() takes a str, not {type(value).__name__}")
    if "\x00" in value or len(value) > _MAX_LITERAL:
        raise ValueError("refusing a NUL character or a value longer than 8192 characters")
    return "'" + _QUOTES.sub(lambda m: m.group(0) * 2, value) + "'"


def guid(value: str) -> str:
    """``value`` as a canonical lower-case GUID string.

    :raises ValueError: if it is not a GUID.
    """
    return str(uuidlib.UUID(str(value)))


def vm_name(name: str) -> str:
    """A Hyper-V VM name for an instance name: control characters blanked, at most 100 characters."""
    cleaned = _CONTROL.sub(" ", name).strip()[: constants.MAX_VM_NAME_LENGTH].strip()
    return cleaned or "instance"


def _checked_name(name: str) -> str:
    if not 0 < len(name) <= constants.MAX_VM_NAME_LENGTH or _CONTROL.search(name):
        raise ValueError("a VM name must be 1 to 100 characters without control characters")
    return name


def _int(value: int, low: int, high: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"expected an integer between {low} and {high}, got {value!r}")
    return str(value)


def _script(name: str, *statements: str) -> Script:
    return Script(name, "\n".join((_PREAMBLE, *statements)))


# The vocabulary ------------------------------------------------------------


def list_vms() -> Script:
    return _script("list_vms", f"Get-VM | {_SELECT_VM} | {_JSON}")


def get_vm(vm_id: str) -> Script:
    """The VM of that Id, or nothing if there is none: whether it exists never
    depends on an error message, which a host words in its own language."""
    # A silenced error still fails the statement, and powershell.exe exits 1
    # after a failed last statement: exit 0 says an empty answer is one.
    return _script(
        "get_vm",
        f"Get-VM -Id {quote(guid(vm_id))} -ErrorAction SilentlyContinue | {_SELECT_VM} | {_JSON}",
        "exit 0",
    )


def new_vm(name: str, memory_mb: int, generation: int, vcpus: int, notes: str) -> Script:
    """Create the VM, off and without disks, label it with ``notes`` and size its CPUs.

    The notes are set first, so a VM that fails later can still be found by
    its instance UUID and removed. :func:`vm_devices` builds and starts it.
    """
    _int(memory_mb, constants.MIN_MEMORY_MB, 1 << 30)
    memory = memory_mb * constants.MIB
    return _script(
        "new_vm",
        f"New-VM -Name {quote(_checked_name(name))} -MemoryStartupBytes {memory} "
        f"-Generation {_int(generation, 1, 2)} -NoVHD"
        f" | Set-VM -Notes {quote(notes)} -Passthru"
        f" | Set-VM -ProcessorCount {_int(vcpus, 1, 4096)} -Passthru | {_SELECT_VM} | {_JSON}",
    )


def vm_actions(vm_id: str, actions: list[str]) -> Script:
    """Run :data:`ACTIONS` in order on one VM; the last passes the VM on to be reported."""
    target = f"Get-VM -Id {quote(guid(vm_id))}"
    statements = [f"{target} | {ACTIONS[action]}" for action in actions[:-1]]
    statements.append(f"{target} | {ACTIONS[actions[-1]]} -Passthru | {_SELECT_VM} | {_JSON}")
    return _script("+".join(actions), *statements)


def destroy_vm(vm_id: str, turn_off: bool, disks: list[str] | None = None) -> Script:
    """Turn the VM off if asked, remove it, then remove ``disks`` (its own VHD files)."""
    target = f"Get-VM -Id {quote(guid(vm_id))}"
    statements = [f"{target} | {ACTIONS['turn_off']}"] if turn_off else []
    statements.append(f"{target} | {ACTIONS['remove']}")
    if disks:
        statements.append(f"Remove-Item -Path {','.join(quote(p) for p in disks)}")
    return _script("destroy_vm", *statements)


def list_vm_states() -> Script:
    """Every VM's Id, State and Notes: the cheap look of the instance poll."""
    return _script("list_vm_states", f"Get-VM | {_SELECT_STATE} | {_JSON}")


def get_host() -> Script:
    return _script("get_host", f"Get-VMHost | {_SELECT_HOST} | {_JSON}")


# Devices -------------------------------------------------------------------------
#
# A device script is a list of statements on one VM, addressed by Id, ending
# with the VM as it then is (started first when asked). Each statement
# builder below takes the VM's Id.


def vm_devices(name: str, vm_id: str, statements: list[str], start: bool = False) -> Script:
    """Run ``statements`` in order, then report the VM (after ``Start-VM`` if ``start``)."""
    target = _target(vm_id)
    last = f"{target} | Start-VM -Passthru" if start else target
    return _script(name, *statements, f"{last} | {_SELECT_VM} | {_JSON}")


def remove_all_adapters(vm_id: str) -> str:
    """New-VM's own "Network Adapter" goes: the spec says which adapters the VM has."""
    return f"{_target(vm_id)} | Get-VMNetworkAdapter | Remove-VMNetworkAdapter"


def set_notes(vm_id: str, notes: str) -> str:
    return f"{_target(vm_id)} | Set-VM -Notes {quote(notes)}"


def new_vhd(path: str, size_bytes: int | None, parent: str | None = None) -> str:
    """A dynamic VHDX of ``size_bytes``, or a differencing disk of ``parent`` grown to it if given."""
    if parent is None:
        if size_bytes is None:
            raise ValueError("a new disk without a parent needs a size")
        size = _int(size_bytes, 1, 1 << 50)
        return f"New-VHD -Path {quote(path)} -SizeBytes {size} -Dynamic | Out-Null"
    child = f"New-VHD -Path {quote(path)} -ParentPath {quote(parent)} -Differencing | Out-Null"
    return child if size_bytes is None else f"{child}\n{resize_vhd(path, size_bytes)}"


def resize_vhd(path: str, size_bytes: int) -> str:
    return f"Resize-VHD -Path {quote(path)} -SizeBytes {_int(size_bytes, 1, 1 << 50)}"


def add_drive(vm_id: str, bus: str, number: int, location: int, path: str) -> str:
    return (
        f"{_target(vm_id)} | Add-VMHardDiskDrive -ControllerType {_bus(bus)} "
        f"-ControllerNumber {_int(number, 0, 3)} -ControllerLocation {_int(location, 0, 63)} "
        f"-Path {quote(path)}"
    )


def remove_drive(vm_id: str, bus: str, number: int, location: int) -> str:
    return (
        f"{_target(vm_id)} | Get-VMHardDiskDrive -ControllerType {_bus(bus)} "
        f"-ControllerNumber {_int(number, 0, 3)} -ControllerLocation {_int(location, 0, 63)}"
        " | Remove-VMHardDiskDrive"
    )


def add_adapter(vm_id: str, switch: str, name: str, mac: str) -> str:
    """An adapter named ``name`` on virtual switch ``switch``, with static MAC ``mac`` (12 hex digits)."""
    if not re.fullmatch(r"[0-9A-F]{12}", mac):
        raise ValueError(f"a Hyper-V MAC address is 12 upper-case hex digits, got {mac!r}")
    return (
        f"{_target(vm_id)} | Add-VMNetworkAdapter -SwitchName {quote(switch)} "
        f"-Name {quote(name)} -StaticMacAddress {quote(mac)}"
    )


def remove_adapter(vm_id: str, name: str) -> str:
    """Remove the adapters named exactly ``name`` (its wildcard characters escaped)."""
    pattern = re.sub(r"([`\[\]*?])", r"`\1", name)
    return (
        f"{_target(vm_id)} | Get-VMNetworkAdapter -Name {quote(pattern)} | Remove-VMNetworkAdapter"
    )


def vm_action(vm_id: str, action: str) -> str:
    """One of :data:`ACTIONS` on the VM, as a statement of a device script."""
    return f"{_target(vm_id)} | {ACTIONS[action]}"


# Checkpoints, images and consoles ----------------------------------------------------


def checkpoint_vm(vm_id: str, name: str) -> Script:
    """A checkpoint named ``name``; its Id and the disks it froze (HardDrives)."""
    return _script(
        "checkpoint_vm",
        f"{_target(vm_id)} | Checkpoint-VM -SnapshotName {quote(name)} -Passthru"
        f" | Select-Object -Property Id,Name,HardDrives | {_JSON}",
    )


def remove_checkpoint(checkpoint_id: str) -> Script:
    """Remove the checkpoint: Hyper-V merges what the VM wrote since into its disks."""
    return _script(
        "remove_checkpoint", f"Get-VMSnapshot -Id {quote(guid(checkpoint_id))} | Remove-VMSnapshot"
    )


def remove_checkpoints(vm_id: str, pattern: str) -> Script:
    """Remove the VM's checkpoints whose names match the wildcard ``pattern`` (none is no error)."""
    return _script(
        "remove_checkpoints", f"{_target(vm_id)} | Remove-VMSnapshot -Name {quote(pattern)}"
    )


def export_disk(
    staging: str, destination: str, source: str | None, size_bytes: int | None = None
) -> Script:
    """A standalone dynamic VHDX at ``destination``: ``source`` and its parents copied
    into one (``Convert-VHD``), or without a source a blank one of ``size_bytes``; report it.

    The disk is made at ``staging`` (what an interrupted attempt left there is
    removed first) and moved into place whole, so ``destination`` never holds
    half a disk.
    """
    if source is not None:
        make = (
            f"Convert-VHD -Path {quote(source)} -DestinationPath {quote(staging)} -VHDType Dynamic"
        )
    elif size_bytes is not None:
        make = new_vhd(staging, size_bytes)
    else:
        raise ValueError("an image needs a source disk or a size")
    return _script(
        "export_disk",
        remove_files_if_present([staging]),
        make,
        f"Move-Item -Path {quote(staging)} -Destination {quote(destination)}",
        f"Get-VHD -Path {quote(destination)} | {_SELECT_VHD} | {_JSON}",
    )


def set_com_port(vm_id: str, number: int, pipe: str) -> str:
    """Connect COM ``number`` of the VM to the named pipe ``pipe`` (a device statement)."""
    return f"{_target(vm_id)} | Set-VMComPort -Number {_int(number, 1, 2)} -Path {quote(pipe)}"


def get_com_port(vm_id: str, number: int) -> Script:
    return _script(
        "get_com_port",
        f"{_target(vm_id)} | Get-VMComPort -Number {_int(number, 1, 2)}"
        f" | Select-Object -Property Name,Path | {_JSON}",
    )


def get_vmconnect_port() -> Script:
    """The port VMConnect listens on (Msvm_TerminalServiceSettingData, 2179 unless changed)."""
    return _script(
        "get_vmconnect_port",
        "Get-CimInstance -Namespace 'root\\virtualization\\v2' "
        f"-ClassName Msvm_TerminalServiceSettingData | Select-Object -Property ListenerPort | {_JSON}",
    )


def get_vhd(path: str) -> Script:
    return _script("get_vhd", f"Get-VHD -Path {quote(path)} | {_SELECT_VHD} | {_JSON}")


def remove_files(paths: list[str]) -> Script:
    return _script("remove_files", f"Remove-Item -Path {','.join(quote(p) for p in paths)}")


def remove_files_if_present(paths: list[str]) -> str:
    """Remove-Item of ``paths`` as a statement that ignores a missing file (and only hides errors)."""
    return f"Remove-Item -Path {','.join(quote(p) for p in paths)} -ErrorAction SilentlyContinue"


def get_iscsi_initiator() -> Script:
    """The host's iSCSI initiator node name, as ``(Get-InitiatorPort).NodeAddress`` gives it."""
    return _script(
        "get_iscsi_initiator",
        f"Get-InitiatorPort -ConnectionType iSCSI | Select-Object -Property NodeAddress | {_JSON}",
    )


def _target(vm_id: str) -> str:
    return f"Get-VM -Id {quote(guid(vm_id))}"


def _bus(bus: str) -> str:
    if bus not in ("IDE", "SCSI"):
        raise ValueError(f"a controller type is IDE or SCSI, got {bus!r}")
    return bus


# Output -------------------------------------------------------------------------


def parse_objects(stdout: bytes) -> list[dict[str, Any]]:
    """ConvertTo-Json's output as a list: nothing -> [], an object -> [it], an array -> its items.

    :raises ValueError: if the output is not JSON objects.
    """
    text = stdout.decode("utf-8", errors="replace").strip()
    if not text:
        return []
    data = json.loads(text)
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError(f"expected JSON objects, got {text[:200]!r}")
    return items


_RECORD_FIELD = re.compile(r"^\s*\+ (CategoryInfo|FullyQualifiedErrorId)\s*: ?(.*)$")
_CMDLET_PREFIX = re.compile(r"^[\w-]+ : ")


def parse_error(script: str, stderr: bytes) -> PowerShellError:
    """The first error record of ``stderr`` (already cleaned of CLIXML by pywinrm).

    PowerShell wraps records at the console width: messages at word
    boundaries, CategoryInfo and FullyQualifiedErrorId anywhere, with a
    trailing blank and a three-space continuation; both are undone here.
    """
    lines = stderr.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    message_lines: list[str] = []
    fields: dict[str, str] = {}
    current: str | None = None
    for line in lines:
        match = _RECORD_FIELD.match(line)
        if match:
            if match.group(1) in fields:
                break  # a second record: keep the first
            current = match.group(1)
            fields[current] = match.group(2)
        elif current is not None and line.startswith("   ") and line.strip():
            fields[current] = fields[current].rstrip(" ") + line.strip()
        elif not fields and not line.startswith(("At line:", "At char:", "+ ")):
            # The message: before the position, or after it for parse errors.
            message_lines.append(line)
    message = _unwrap(message_lines)
    message = _CMDLET_PREFIX.sub("", message, count=1) or "PowerShell failed without a message"
    return PowerShellError(
        script,
        message,
        fields.get("FullyQualifiedErrorId", "").strip(),
        fields.get("CategoryInfo", "").strip(),
    )


def _unwrap(lines: list[str]) -> str:
    text = ""
    for line in lines:
        if text and not text.endswith(" "):
            text += " "
        text += line
    return " ".join(text.split())
