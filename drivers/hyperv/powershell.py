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
    "destroy_vm",
    "get_host",
    "get_vm",
    "guid",
    "list_vms",
    "new_vm",
    "parse_error",
    "parse_objects",
    "quote",
    "vm_actions",
    "vm_name",
]

_PREAMBLE = "$ErrorActionPreference = 'Stop'"
_JSON = "ConvertTo-Json -Depth 2 -Compress"
#: The VM properties the driver reads; nothing nested, so depth 2 is plenty.
VM_PROPERTIES = ("Id", "Name", "State", "Notes", "ProcessorCount", "MemoryStartup")
HOST_PROPERTIES = ("Name", "LogicalProcessorCount", "MemoryCapacity")
_SELECT_VM = "Select-Object -Property " + ",".join(VM_PROPERTIES)
_SELECT_HOST = "Select-Object -Property " + ",".join(HOST_PROPERTIES)

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
    return _script("get_vm", f"Get-VM -Id {quote(guid(vm_id))} | {_SELECT_VM} | {_JSON}")


def new_vm(name: str, memory_mb: int, generation: int, vcpus: int, notes: str) -> Script:
    """Create the VM without disks, label it with ``notes``, size its CPUs and start it.

    The notes are set first, so a VM that fails later in the pipeline can
    still be found by its instance UUID and removed.
    """
    _int(memory_mb, constants.MIN_MEMORY_MB, 1 << 30)
    memory = memory_mb * constants.MIB
    return _script(
        "new_vm",
        f"New-VM -Name {quote(_checked_name(name))} -MemoryStartupBytes {memory} "
        f"-Generation {_int(generation, 1, 2)} -NoVHD"
        f" | Set-VM -Notes {quote(notes)} -Passthru"
        f" | Set-VM -ProcessorCount {_int(vcpus, 1, 4096)} -Passthru"
        f" | Start-VM -Passthru | {_SELECT_VM} | {_JSON}",
    )


def vm_actions(vm_id: str, actions: list[str]) -> Script:
    """Run :data:`ACTIONS` in order on one VM; the last passes the VM on to be reported."""
    target = f"Get-VM -Id {quote(guid(vm_id))}"
    statements = [f"{target} | {ACTIONS[action]}" for action in actions[:-1]]
    statements.append(f"{target} | {ACTIONS[actions[-1]]} -Passthru | {_SELECT_VM} | {_JSON}")
    return _script("+".join(actions), *statements)


def destroy_vm(vm_id: str, turn_off: bool) -> Script:
    target = f"Get-VM -Id {quote(guid(vm_id))}"
    statements = [f"{target} | {ACTIONS['turn_off']}"] if turn_off else []
    statements.append(f"{target} | {ACTIONS['remove']}")
    return _script("destroy_vm", *statements)


def get_host() -> Script:
    return _script("get_host", f"Get-VMHost | {_SELECT_HOST} | {_JSON}")


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
