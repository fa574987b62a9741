"""The RPC contract's version, shared by the client and the worker's endpoint.

Both sides import :data:`RPC_API_VERSION` from here; a unit test checks that
the client's history and the endpoint's target agree with it, and another
(``tests/unit/test_rpc_interface.py``) fingerprints the interface itself
against :data:`METHOD_VERSIONS` and :data:`ARGUMENT_VERSIONS`, so that a
method or argument cannot change without a version bump.

How versions move is described for driver authors in ``docs/contract.md``.
"""

from __future__ import annotations

import functools

__all__ = [
    "RPC_API_VERSION",
    "RPC_API_MIN_VERSION",
    "VERSION_HISTORY",
    "VERSION_ALIASES",
    "METHOD_VERSIONS",
    "ARGUMENT_VERSIONS",
    "DROPPABLE_ARGUMENTS",
    "OBJECT_VERSIONS",
    "parse",
    "newer",
    "lowest",
    "object_versions_at",
    "rpc_version_of_object",
]

#: The newest version of the compute RPC contract this code speaks.
RPC_API_VERSION = "1.4"

#: The oldest version this code still serves: the start of the current major,
#: or, for one release after a major bump, the start of the previous major
#: (see :mod:`computed.manager` and ``docs/contract.md``).
RPC_API_MIN_VERSION = "1.0"

#: One line per bump, oldest first.
VERSION_HISTORY: tuple[tuple[str, str], ...] = (
    ("1.0", "Initial contract: instance lifecycle, host resources, capabilities, ping"),
    ("1.1", "Added get_console_output; InstanceSpec 1.1 (description)"),
    (
        "1.2",
        "Devices: InstanceSpec 1.2 (block_devices, network_interfaces), InstanceInfo 1.1; "
        "added get_volume_connector, attach_volume, detach_volume, extend_volume, "
        "attach_interface, detach_interface; instance.power_state.update and "
        "instance.delete notifications (InstanceStatePayload 1.0)",
    ),
    (
        "1.3",
        "Images, rescue and consoles: added snapshot, delete_image, rescue, unrescue, "
        "get_serial_console, get_graphical_console (ImageRef 1.0, ConsoleConnection 1.0); "
        "power state rescued (InstanceInfo 1.2, InstanceActionPayload 1.1 with progress "
        "and image, InstanceStatePayload 1.1)",
    ),
    (
        "1.4",
        "Moving instances: added check_migration_destination, migrate_disk_and_power_off, "
        "finish_migration, confirm_migration, revert_migration, finish_revert_migration, "
        "pre_live_migration, live_migration, post_live_migration_at_destination, "
        "rollback_live_migration_at_destination, abort_live_migration, evacuate "
        "(Migration 1.0, Flavor 1.0)",
    ),
)

#: Release names operators may use as a pin, mapped to the version they speak.
VERSION_ALIASES: dict[str, str] = {
    "alpha": "1.0",
    "beta": "1.1",
    "gamma": "1.2",
    "delta": "1.3",
    "epsilon": "1.4",
}

#: The version that introduced each method of the contract.
METHOD_VERSIONS: dict[str, str] = {
    "spawn": "1.0",
    "destroy": "1.0",
    "reboot": "1.0",
    "power_on": "1.0",
    "power_off": "1.0",
    "pause": "1.0",
    "unpause": "1.0",
    "suspend": "1.0",
    "resume": "1.0",
    "get_info": "1.0",
    "list_instances": "1.0",
    "get_host_resources": "1.0",
    "get_capabilities": "1.0",
    "ping": "1.0",
    "get_console_output": "1.1",
    "get_volume_connector": "1.2",
    "attach_volume": "1.2",
    "detach_volume": "1.2",
    "extend_volume": "1.2",
    "attach_interface": "1.2",
    "detach_interface": "1.2",
    "snapshot": "1.3",
    "delete_image": "1.3",
    "rescue": "1.3",
    "unrescue": "1.3",
    "get_serial_console": "1.3",
    "get_graphical_console": "1.3",
    "check_migration_destination": "1.4",
    "migrate_disk_and_power_off": "1.4",
    "finish_migration": "1.4",
    "confirm_migration": "1.4",
    "revert_migration": "1.4",
    "finish_revert_migration": "1.4",
    "pre_live_migration": "1.4",
    "live_migration": "1.4",
    "post_live_migration_at_destination": "1.4",
    "rollback_live_migration_at_destination": "1.4",
    "abort_live_migration": "1.4",
    "evacuate": "1.4",
}

#: Arguments added to a method after the version that introduced it:
#: ``{method: {argument: version}}``. Such an argument must be optional.
ARGUMENT_VERSIONS: dict[str, dict[str, str]] = {}

#: Of :data:`ARGUMENT_VERSIONS`, the arguments the client may silently leave
#: out for a host too old to take them (because they only inform), as
#: opposed to refusing the call: ``{method: {argument, ...}}``.
DROPPABLE_ARGUMENTS: dict[str, frozenset[str]] = {}

#: The version of each versioned object the contract carries at each RPC
#: version. The client backports arguments to these versions
#: (``obj_make_compatible``) for a host that speaks an older RPC version.
OBJECT_VERSIONS: dict[str, dict[str, str]] = {
    "1.0": {
        "HostCapabilities": "1.0",
        "HostResources": "1.0",
        "InstanceActionPayload": "1.0",
        "InstanceInfo": "1.0",
        "InstanceInfoList": "1.0",
        "InstanceSpec": "1.0",
        "PingResult": "1.0",
    },
    "1.1": {
        "HostCapabilities": "1.0",
        "HostResources": "1.0",
        "InstanceActionPayload": "1.0",
        "InstanceInfo": "1.0",
        "InstanceInfoList": "1.0",
        "InstanceSpec": "1.1",
        "PingResult": "1.0",
    },
    "1.2": {
        "BlockDevice": "1.0",
        "HostCapabilities": "1.0",
        "HostResources": "1.0",
        "InstanceActionPayload": "1.0",
        "InstanceInfo": "1.1",
        "InstanceInfoList": "1.1",
        "InstanceSpec": "1.2",
        "InstanceStatePayload": "1.0",
        "NetworkInterface": "1.0",
        "PingResult": "1.0",
        "VolumeConnection": "1.0",
        "VolumeConnector": "1.0",
    },
    "1.3": {
        "BlockDevice": "1.0",
        "ConsoleConnection": "1.0",
        "HostCapabilities": "1.0",
        "HostResources": "1.0",
        "ImageRef": "1.0",
        "InstanceActionPayload": "1.1",
        "InstanceInfo": "1.2",
        "InstanceInfoList": "1.2",
        "InstanceSpec": "1.2",
        "InstanceStatePayload": "1.1",
        "NetworkInterface": "1.0",
        "PingResult": "1.0",
        "VolumeConnection": "1.0",
        "VolumeConnector": "1.0",
    },
    "1.4": {
        "BlockDevice": "1.0",
        "ConsoleConnection": "1.0",
        "Flavor": "1.0",
        "HostCapabilities": "1.0",
        "HostResources": "1.0",
        "ImageRef": "1.0",
        "InstanceActionPayload": "1.1",
        "InstanceInfo": "1.2",
        "InstanceInfoList": "1.2",
        "InstanceSpec": "1.2",
        "InstanceStatePayload": "1.1",
        "Migration": "1.0",
        "NetworkInterface": "1.0",
        "PingResult": "1.0",
        "VolumeConnection": "1.0",
        "VolumeConnector": "1.0",
    },
}


@functools.lru_cache(maxsize=512)
def parse(version: str) -> tuple[int, int]:
    """Return ``(major, minor)`` for a ``"major.minor"`` string.

    :raises ValueError: if the string is not of that form.
    """
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(f"not a major.minor version: {version!r}")
    return int(major), int(minor)


def newer(a: str, b: str) -> bool:
    """Whether version ``a`` is strictly newer than ``b``."""
    return parse(a) > parse(b)


def lowest(*versions: str) -> str:
    """The oldest of ``versions``."""
    return min(versions, key=parse)


def object_versions_at(rpc_version: str) -> dict[str, str]:
    """The object versions to send to a host that speaks ``rpc_version``.

    A version between two listed ones (a minor that changed no object) uses
    the newest listed version not newer than it.
    """
    listed = [v for v in OBJECT_VERSIONS if not newer(v, rpc_version)]
    if not listed:
        raise ValueError(f"no object versions are recorded for RPC {rpc_version}")
    return OBJECT_VERSIONS[max(listed, key=parse)]


def rpc_version_of_object(name: str, object_version: str) -> str:
    """The first RPC version that carries object ``name`` at ``object_version``."""
    for rpc_version in sorted(OBJECT_VERSIONS, key=parse):
        if OBJECT_VERSIONS[rpc_version].get(name) == object_version:
            return rpc_version
    return RPC_API_VERSION
