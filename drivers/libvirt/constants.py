"""How libvirt's domain states and events read in the contract's terms."""

from __future__ import annotations

import libvirt

from computed.objects import PowerState

__all__ = [
    "DOMAIN_NAME_PREFIX",
    "METADATA_NS",
    "METADATA_PREFIX",
    "domain_name",
    "event_name",
    "event_power_state",
    "power_state",
]

#: The libvirt name of a domain this driver defines is this prefix and the
#: instance UUID: instance names need not be unique, libvirt names must be.
DOMAIN_NAME_PREFIX = "computed-"

#: Namespace of the ``<metadata>`` element holding what libvirt has no
#: field for (the instance's name, its disk size, its image).
METADATA_NS = "urn:computed:libvirt:instance:1.0"
METADATA_PREFIX = "computed"

_STATES: dict[int, str] = {
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    # A guest on its way down: already gone as far as the caller is
    # concerned; power_on and power_off finish the job with destroy.
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.STOPPED,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.STOPPED,
    # Suspended to RAM by the guest itself; resume wakes it up.
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}

_EVENTS: dict[int, str] = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}


def domain_name(uuid: str) -> str:
    """The libvirt name of the domain this driver defines for instance ``uuid``."""
    return f"{DOMAIN_NAME_PREFIX}{uuid}"


def power_state(state: int, active: bool, managed_save: bool) -> str:
    """The contract's power state of a domain.

    :param state: the libvirt state (``virDomain.info()[0]``).
    :param active: whether the domain runs (decides states libvirt leaves open).
    :param managed_save: whether the domain has a managed save image: a
        shut-off domain with one is suspended, not stopped.
    """
    if state == libvirt.VIR_DOMAIN_SHUTOFF and managed_save:
        return PowerState.SUSPENDED
    if state in _STATES:
        return _STATES[state]
    # VIR_DOMAIN_NOSTATE, or a state newer than this table.
    return PowerState.RUNNING if active else PowerState.STOPPED


def event_name(event: int) -> str:
    """A lifecycle event's name (``started``, ``stopped``, ...), for logs and listeners."""
    return _EVENTS.get(event, f"event-{event}")


def event_power_state(event: int, detail: int) -> str | None:
    """The power state a lifecycle event leads to, or None if it says nothing about it."""
    if event in (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_RESUMED):
        return PowerState.RUNNING
    if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
        return PowerState.PAUSED
    if event == libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED:
        return PowerState.SUSPENDED
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED:
            return PowerState.SUSPENDED
        return PowerState.STOPPED
    return None
