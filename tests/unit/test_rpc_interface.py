"""A fingerprint of the RPC interface: methods, their arguments, and the version of each.

The objects have their own fingerprint (test_objects.py). This one covers
what oslo.versionedobjects cannot see: the endpoint's methods and their
arguments. The interface each version offers is recorded below; changing it
without a version bump fails with a message that says what to bump.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from computed import version
from computed.manager import ComputeManager
from rpcapi import ComputeAPI

#: The interface as each version offers it: ``method: "<introduced> (<arguments>)"``;
#: an argument added by a later minor carries its version in brackets.
#: Record a new version's interface here when you bump RPC_API_VERSION; never
#: edit an older version's entry (its callers still send what it says).
_RECORDED: dict[str, dict[str, str]] = {
    "1.0": {
        "destroy": "1.0 (uuid)",
        "get_capabilities": "1.0 ()",
        "get_host_resources": "1.0 ()",
        "get_info": "1.0 (uuid)",
        "list_instances": "1.0 ()",
        "pause": "1.0 (uuid)",
        "ping": "1.0 ()",
        "power_off": "1.0 (uuid)",
        "power_on": "1.0 (uuid)",
        "reboot": "1.0 (uuid, reboot_type='soft')",
        "resume": "1.0 (uuid)",
        "spawn": "1.0 (instance)",
        "suspend": "1.0 (uuid)",
        "unpause": "1.0 (uuid)",
    },
    "1.1": {
        "destroy": "1.0 (uuid)",
        "get_capabilities": "1.0 ()",
        "get_console_output": "1.1 (uuid, tail_lines=None)",
        "get_host_resources": "1.0 ()",
        "get_info": "1.0 (uuid)",
        "list_instances": "1.0 ()",
        "pause": "1.0 (uuid)",
        "ping": "1.0 ()",
        "power_off": "1.0 (uuid)",
        "power_on": "1.0 (uuid)",
        "reboot": "1.0 (uuid, reboot_type='soft')",
        "resume": "1.0 (uuid)",
        "spawn": "1.0 (instance)",
        "suspend": "1.0 (uuid)",
        "unpause": "1.0 (uuid)",
    },
    "1.2": {
        "attach_interface": "1.2 (uuid, vif)",
        "attach_volume": "1.2 (uuid, connection_info, mountpoint=None)",
        "destroy": "1.0 (uuid)",
        "detach_interface": "1.2 (uuid, port_id)",
        "detach_volume": "1.2 (uuid, volume_id)",
        "extend_volume": "1.2 (uuid, volume_id, new_size)",
        "get_capabilities": "1.0 ()",
        "get_console_output": "1.1 (uuid, tail_lines=None)",
        "get_host_resources": "1.0 ()",
        "get_info": "1.0 (uuid)",
        "get_volume_connector": "1.2 ()",
        "list_instances": "1.0 ()",
        "pause": "1.0 (uuid)",
        "ping": "1.0 ()",
        "power_off": "1.0 (uuid)",
        "power_on": "1.0 (uuid)",
        "reboot": "1.0 (uuid, reboot_type='soft')",
        "resume": "1.0 (uuid)",
        "spawn": "1.0 (instance)",
        "suspend": "1.0 (uuid)",
        "unpause": "1.0 (uuid)",
    },
    "1.3": {
        "attach_interface": "1.2 (uuid, vif)",
        "attach_volume": "1.2 (uuid, connection_info, mountpoint=None)",
        "delete_image": "1.3 (image_id)",
        "destroy": "1.0 (uuid)",
        "detach_interface": "1.2 (uuid, port_id)",
        "detach_volume": "1.2 (uuid, volume_id)",
        "extend_volume": "1.2 (uuid, volume_id, new_size)",
        "get_capabilities": "1.0 ()",
        "get_console_output": "1.1 (uuid, tail_lines=None)",
        "get_graphical_console": "1.3 (uuid)",
        "get_host_resources": "1.0 ()",
        "get_info": "1.0 (uuid)",
        "get_serial_console": "1.3 (uuid)",
        "get_volume_connector": "1.2 ()",
        "list_instances": "1.0 ()",
        "pause": "1.0 (uuid)",
        "ping": "1.0 ()",
        "power_off": "1.0 (uuid)",
        "power_on": "1.0 (uuid)",
        "reboot": "1.0 (uuid, reboot_type='soft')",
        "rescue": "1.3 (uuid, rescue_image=None)",
        "resume": "1.0 (uuid)",
        "snapshot": "1.3 (uuid, image_name)",
        "spawn": "1.0 (instance)",
        "suspend": "1.0 (uuid)",
        "unpause": "1.0 (uuid)",
        "unrescue": "1.3 (uuid)",
    },
    "1.4": {
        "abort_live_migration": "1.4 (migration)",
        "attach_interface": "1.2 (uuid, vif)",
        "attach_volume": "1.2 (uuid, connection_info, mountpoint=None)",
        "check_migration_destination": "1.4 (migration)",
        "confirm_migration": "1.4 (migration)",
        "delete_image": "1.3 (image_id)",
        "destroy": "1.0 (uuid)",
        "detach_interface": "1.2 (uuid, port_id)",
        "detach_volume": "1.2 (uuid, volume_id)",
        "evacuate": "1.4 (migration)",
        "extend_volume": "1.2 (uuid, volume_id, new_size)",
        "finish_migration": "1.4 (migration)",
        "finish_revert_migration": "1.4 (migration)",
        "get_capabilities": "1.0 ()",
        "get_console_output": "1.1 (uuid, tail_lines=None)",
        "get_graphical_console": "1.3 (uuid)",
        "get_host_resources": "1.0 ()",
        "get_info": "1.0 (uuid)",
        "get_serial_console": "1.3 (uuid)",
        "get_volume_connector": "1.2 ()",
        "list_instances": "1.0 ()",
        "live_migration": "1.4 (migration)",
        "migrate_disk_and_power_off": "1.4 (migration)",
        "pause": "1.0 (uuid)",
        "ping": "1.0 ()",
        "post_live_migration_at_destination": "1.4 (migration)",
        "power_off": "1.0 (uuid)",
        "power_on": "1.0 (uuid)",
        "pre_live_migration": "1.4 (migration)",
        "reboot": "1.0 (uuid, reboot_type='soft')",
        "rescue": "1.3 (uuid, rescue_image=None)",
        "resume": "1.0 (uuid)",
        "revert_migration": "1.4 (migration)",
        "rollback_live_migration_at_destination": "1.4 (migration)",
        "snapshot": "1.3 (uuid, image_name)",
        "spawn": "1.0 (instance)",
        "suspend": "1.0 (uuid)",
        "unpause": "1.0 (uuid)",
        "unrescue": "1.3 (uuid)",
    },
}

#: Public ComputeAPI methods that are not RPC operations.
_CLIENT_HELPERS = {
    "cleanup",
    "version_cap",
    "can_send_version",
    "call_counts",
    # the fleet: the registry's inventory, and one operation on many hosts
    "list_hosts",
    "for_each_host",
}

_ENDPOINT_SKIP = ("self", "ctxt")
_CLIENT_SKIP = ("self", "ctxt", "host", "cast")


def _public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def _arguments(func: Callable[..., Any], skip: tuple[str, ...]) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(func).parameters.values() if p.name not in skip]


def _describe(method: str, func: Callable[..., Any], at: str) -> str | None:
    """The method as version ``at`` offers it, or None if ``at`` predates it."""
    introduced = version.METHOD_VERSIONS.get(method, "?")
    if introduced != "?" and version.newer(introduced, at):
        return None
    later = version.ARGUMENT_VERSIONS.get(method, {})
    parts = []
    for param in _arguments(func, _ENDPOINT_SKIP):
        since = later.get(param.name)
        if since is not None and version.newer(since, at):
            continue
        text = param.name
        if param.default is not inspect.Parameter.empty:
            text += f"={param.default!r}"
        if since is not None:
            text += f" [{since}]"
        parts.append(text)
    return f"{introduced} ({', '.join(parts)})"


def _interface_at(at: str) -> dict[str, str]:
    described = {
        name: _describe(name, func, at) for name, func in _public_methods(ComputeManager).items()
    }
    return {name: text for name, text in described.items() if text is not None}


def _differences(recorded: dict[str, str], actual: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(set(recorded) | set(actual)):
        before, now = recorded.get(name), actual.get(name)
        if before != now:
            lines.append(
                f"  ComputeManager.{name}: recorded {before or 'absent'}, now {now or 'absent'}"
            )
    return lines


def test_interface_matches_the_recorded_fingerprint() -> None:
    current = version.RPC_API_VERSION
    actual = _interface_at(current)
    recorded = _RECORDED.get(current)
    assert recorded is not None, (
        f"RPC_API_VERSION is {current}, but no interface is recorded for it: add "
        f"_RECORDED[{current!r}] = {actual!r} to tests/unit/test_rpc_interface.py"
    )
    differences = _differences(recorded, actual)
    major, minor = version.parse(current)
    bump = f"{major}.{minor + 1}"
    assert not differences, (
        f"The RPC interface changed without a version bump (still {current}):\n"
        + "\n".join(differences)
        + f"\nBump the contract to {bump}: RPC_API_VERSION = {bump!r} and a {bump!r} line in "
        "VERSION_HISTORY (computed/version.py) and in ComputeAPI's docstring; tag what you "
        f"added with {bump!r} in METHOD_VERSIONS (a new method) or ARGUMENT_VERSIONS (a new "
        "argument, which must have a default); add the client side to rpcapi.ComputeAPI; then "
        f"record the new interface as _RECORDED[{bump!r}] in tests/unit/test_rpc_interface.py. "
        "Removing or renaming anything needs a major bump (docs/contract.md)."
    )


def test_older_versions_of_the_major_are_still_offered() -> None:
    """A minor bump only adds: what an older minor offered must still be there, unchanged."""
    major = version.parse(version.RPC_API_VERSION)[0]
    for older, recorded in _RECORDED.items():
        if version.parse(older)[0] != major or older == version.RPC_API_VERSION:
            continue
        differences = _differences(recorded, _interface_at(older))
        assert not differences, (
            f"Callers speaking {older} can no longer be served as they expect:\n"
            + "\n".join(differences)
            + "\nA minor bump may only add methods and optional arguments (tagged in "
            "METHOD_VERSIONS / ARGUMENT_VERSIONS); removing or changing one needs a major "
            "bump (docs/contract.md)."
        )


def test_version_tables_are_consistent() -> None:
    methods = _public_methods(ComputeManager)
    known = {v for v, _ in version.VERSION_HISTORY}
    untagged = sorted(set(methods) - set(version.METHOD_VERSIONS))
    assert not untagged, (
        f"Endpoint methods missing from computed.version.METHOD_VERSIONS: {untagged}. A new "
        "method needs a minor bump, and the version that introduced it in METHOD_VERSIONS."
    )
    gone = sorted(set(version.METHOD_VERSIONS) - set(methods))
    assert not gone, f"METHOD_VERSIONS names methods the endpoint lacks: {gone}"
    for method, introduced in version.METHOD_VERSIONS.items():
        assert introduced in known, f"{method}: version {introduced} is not in VERSION_HISTORY"
    for method, arguments in version.ARGUMENT_VERSIONS.items():
        params = {p.name: p for p in _arguments(methods[method], _ENDPOINT_SKIP)}
        for name, since in arguments.items():
            assert name in params, f"ARGUMENT_VERSIONS: {method} has no argument {name!r}"
            assert since in known, f"{method}({name}): {since} is not in VERSION_HISTORY"
            assert version.newer(since, version.METHOD_VERSIONS[method])
            assert params[name].default is not inspect.Parameter.empty, (
                f"{method}({name}) was added in {since}, so it must be optional: callers of "
                "older versions do not send it"
            )
    for method, droppable in version.DROPPABLE_ARGUMENTS.items():
        assert droppable <= set(version.ARGUMENT_VERSIONS.get(method, {})), method
    assert set(version.OBJECT_VERSIONS) <= known


def test_client_methods_match_the_endpoint() -> None:
    """Each RPC method of ComputeAPI takes what the endpoint takes, by the same names."""
    endpoint = _public_methods(ComputeManager)
    client = _public_methods(ComputeAPI)
    for method in version.METHOD_VERSIONS:
        assert method in client, f"rpcapi.ComputeAPI has no method for the operation {method}"
        expected = [(p.name, p.default) for p in _arguments(endpoint[method], _ENDPOINT_SKIP)]
        actual = [(p.name, p.default) for p in _arguments(client[method], _CLIENT_SKIP)]
        assert actual == expected, (
            f"ComputeAPI.{method} takes {actual}, the endpoint takes {expected}: the client "
            "must offer the contract's arguments with the same names and defaults"
        )
    extra = sorted(
        name
        for name in set(client) - set(version.METHOD_VERSIONS) - _CLIENT_HELPERS
        if not name.startswith("can_send_")
    )
    assert not extra, (
        f"ComputeAPI methods that are neither operations of the contract nor known helpers: "
        f"{extra}. An operation needs an endpoint method and a METHOD_VERSIONS entry."
    )


def test_fingerprint_catches_an_argument_added_without_a_bump() -> None:
    """The guard itself: an extra argument on an endpoint method shows up as a difference."""

    def reboot(
        self: Any, ctxt: Any, uuid: str, reboot_type: str = "soft", reason: str | None = None
    ) -> None: ...

    described = _describe("reboot", reboot, version.RPC_API_VERSION)
    recorded = _RECORDED[version.RPC_API_VERSION]["reboot"]
    assert described != recorded
    assert described == "1.0 (uuid, reboot_type='soft', reason=None)"
