"""How xapi's VM records read in the contract's terms."""

from __future__ import annotations

from typing import Any

from computed.objects import PowerState

__all__ = [
    "DRIVER",
    "HYPERVISOR_TYPE",
    "NAME_LABEL_PREFIX",
    "NULL_REF",
    "OTHER_CONFIG_DISK_GB",
    "OTHER_CONFIG_HOST",
    "OTHER_CONFIG_IMAGE",
    "OTHER_CONFIG_KIND",
    "OTHER_CONFIG_NETWORK",
    "OTHER_CONFIG_PORT_ID",
    "OTHER_CONFIG_VOLUME_ID",
    "OSVOL",
    "OTHER_CONFIG_NAME",
    "OTHER_CONFIG_RESCUE",
    "OTHER_CONFIG_RESCUE_OF",
    "OTHER_CONFIG_UUID",
    "RESCUE_BLOCKED",
    "XAPI_HALTED",
    "instance_state",
    "name_label",
    "power_state",
    "rescue_name_label",
]

#: The driver's name, in the errors it raises and the capabilities it reports.
DRIVER = "xenapi"
HYPERVISOR_TYPE = "xen"

#: xapi's null reference.
NULL_REF = "OpaqueRef:NULL"

#: A VM this driver makes is named this prefix and the instance UUID, for an
#: administrator to recognise it (the instance's own name need not be
#: unique). The name is only a label, which may be changed: the driver finds
#: its VMs by ``other_config`` (:data:`OTHER_CONFIG_UUID`) only.
NAME_LABEL_PREFIX = "computed-"

#: ``other_config`` keys recording what xapi has no field for. The UUID key
#: is what finds an instance's VM, and what makes a VM this driver's.
OTHER_CONFIG_UUID = "computed_uuid"
OTHER_CONFIG_HOST = "computed_host"
OTHER_CONFIG_NAME = "computed_name"
OTHER_CONFIG_DISK_GB = "computed_disk_gb"

#: A disk's VBD (and VDI) records where it came from: its kind (``image``,
#: ``blank``, ``volume``), the image it was made from, the volume it is.
OTHER_CONFIG_KIND = "computed_kind"
OTHER_CONFIG_IMAGE = "computed_image"
OTHER_CONFIG_VOLUME_ID = "computed_volume_id"
#: Marks a volume's VBD, as nova's XenAPI driver marked it.
OSVOL = "osvol"
#: A VIF records the port it plugs and the network it was asked for.
OTHER_CONFIG_PORT_ID = "computed_port_id"
OTHER_CONFIG_NETWORK = "computed_network"

#: A rescued instance's VM carries the rescue VM's uuid under this key (the
#: rescued state lives in the pool, not in the worker); the rescue VM names
#: the instance it rescues under the other.
OTHER_CONFIG_RESCUE = "computed_rescue"
OTHER_CONFIG_RESCUE_OF = "computed_rescue_of"
#: The operations blocked on a rescued instance's VM (``blocked_operations``),
#: so that nobody starts it while the rescue VM uses its disk, as nova's
#: "bootlock" did.
RESCUE_BLOCKED = ("start", "start_on")

XAPI_HALTED = "Halted"

_POWER_STATES: dict[str, str] = {
    "Halted": PowerState.STOPPED,
    "Running": PowerState.RUNNING,
    "Paused": PowerState.PAUSED,
    "Suspended": PowerState.SUSPENDED,
}

# VM_BAD_POWER_STATE names states in lower case.
_LOWER_POWER_STATES = {key.lower(): value for key, value in _POWER_STATES.items()}


def name_label(uuid: str) -> str:
    """The ``name_label`` of the VM this driver makes for instance ``uuid``."""
    return f"{NAME_LABEL_PREFIX}{uuid}"


def rescue_name_label(uuid: str) -> str:
    """The ``name_label`` of the VM that boots instance ``uuid``'s rescue image."""
    return f"{name_label(uuid)}-rescue"


def instance_state(record: dict[str, Any]) -> str:
    """The contract's power state of the instance whose VM record is ``record``:
    ``rescued`` while it is marked so, else its VM's power state."""
    if OTHER_CONFIG_RESCUE in record["other_config"]:
        return PowerState.RESCUED
    return power_state(record["power_state"])


def power_state(xapi_state: str) -> str:
    """The contract's power state of a VM whose ``power_state`` is ``xapi_state``.

    Accepts xapi's record spelling (``Running``) and the lower-case one of its
    error parameters (``running``). A state newer than this table reads as
    stopped: the one state from which nothing but power_on is attempted.
    """
    return _POWER_STATES.get(xapi_state) or _LOWER_POWER_STATES.get(
        xapi_state.lower(), PowerState.STOPPED
    )
