"""How Hyper-V's VM states and identities read in the contract's terms."""

from __future__ import annotations

import enum

from computed.objects import PowerState

__all__ = [
    "DRIVER",
    "HYPERVISOR_TYPE",
    "MAX_VM_NAME_LENGTH",
    "MIB",
    "MEMORY_STEP_MB",
    "MIN_MEMORY_MB",
    "NOTES_PREFIX",
    "SERIAL_PIPE_PREFIX",
    "SERIAL_PORT",
    "VMCONNECT_PORT",
    "VMState",
    "is_transitional",
    "power_state",
]

#: The driver's name, in its entry point and in the errors it raises.
DRIVER = "hyperv"
HYPERVISOR_TYPE = "hyperv"

MIB = 1024 * 1024

#: Hyper-V refuses longer VM names; the full instance name is kept in the notes.
MAX_VM_NAME_LENGTH = 100

#: Hyper-V's limits on startup memory: at least 32 MiB, in steps of 2 MiB.
MIN_MEMORY_MB = 32
MEMORY_STEP_MB = 2

#: Hyper-V makes up its own VM Id, so the instance UUID (with the instance's
#: name and disk size, which Hyper-V has no field for) lives in the VM's
#: Notes, as this prefix followed by compact ASCII-only JSON.
NOTES_PREFIX = "computed-instance:"

#: The COM port of a VM the driver connects to a named pipe for its serial
#: console, and the pipe's name before the instance UUID.
SERIAL_PORT = 1
SERIAL_PIPE_PREFIX = "computed-"
#: The port of VMConnect (RDP to a VM's console) on a host nobody reconfigured.
VMCONNECT_PORT = 2179


class VMState(enum.IntEnum):
    """``Microsoft.HyperV.PowerShell.VMState``, as ConvertTo-Json prints it (a number).

    The numbers are reported to vary between Windows versions; an unknown
    number reads as :attr:`Other`.
    """

    Other = 1
    Running = 2
    Off = 3
    Stopping = 4
    Saved = 6
    Paused = 9
    Starting = 10
    Reset = 11
    Saving = 32773
    Pausing = 32776
    Resuming = 32777
    FastSaved = 32779

    @classmethod
    def of(cls, value: object) -> VMState:
        try:
            return cls(int(value))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return cls.Other


# Steady states, and the state each transitional one is heading to.
_POWER_STATES: dict[VMState, str] = {
    VMState.Running: PowerState.RUNNING,
    VMState.Off: PowerState.STOPPED,
    VMState.Saved: PowerState.SUSPENDED,
    VMState.FastSaved: PowerState.SUSPENDED,
    VMState.Paused: PowerState.PAUSED,
    VMState.Starting: PowerState.RUNNING,
    VMState.Reset: PowerState.RUNNING,
    VMState.Resuming: PowerState.RUNNING,
    VMState.Stopping: PowerState.STOPPED,
    VMState.Saving: PowerState.SUSPENDED,
    VMState.Pausing: PowerState.PAUSED,
}

_TRANSITIONAL = frozenset(
    {
        VMState.Other,
        VMState.Stopping,
        VMState.Starting,
        VMState.Reset,
        VMState.Saving,
        VMState.Pausing,
        VMState.Resuming,
    }
)


def power_state(state: VMState) -> str:
    """The contract's power state of a VM (a transitional state reads as where it leads)."""
    return _POWER_STATES.get(state, PowerState.STOPPED)


def is_transitional(state: VMState) -> bool:
    """True while Hyper-V refuses every operation on the VM (it is between two states)."""
    return state in _TRANSITIONAL
