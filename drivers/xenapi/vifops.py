"""Interfaces: the xapi network of a port, and the VIF that plugs the VM into it."""

from __future__ import annotations

from typing import Any

from computed import exception
from computed.objects import NetworkInterface
from drivers.xenapi import constants
from drivers.xenapi.session import PoolSession

__all__ = ["create_vif", "find_network", "find_vif", "mac_taken"]


def find_network(session: PoolSession, operation: str, name: str) -> tuple[str, dict[str, Any]]:
    """The network whose ``name_label`` or ``bridge`` is ``name``, as nova looked it up.

    :raises computed.exception.InvalidRequest: if none or several match.
    """
    refs = session.call("network.get_by_name_label", name)
    if len(refs) == 1:
        return str(refs[0]), session.call("network.get_record", refs[0])
    if not refs:
        records = session.call("network.get_all_records")
        refs = [ref for ref, record in records.items() if record["bridge"] == name]
        if len(refs) == 1:
            return str(refs[0]), records[refs[0]]
    found = "no network" if not refs else f"{len(refs)} networks"
    raise exception.InvalidRequest(
        operation=operation, reason=f"the pool has {found} named (or bridged as) {name!r}"
    )


def find_vif(
    session: PoolSession, record: dict[str, Any], port_id: str
) -> tuple[str, dict[str, Any]] | None:
    """The VM's VIF of port ``port_id``, with its record."""
    for vif in record["VIFs"]:
        vif_record = session.call("VIF.get_record", vif)
        if vif_record["other_config"].get(constants.OTHER_CONFIG_PORT_ID) == port_id:
            return str(vif), vif_record
    return None


def mac_taken(session: PoolSession, mac: str) -> bool:
    """Whether any VIF of the pool has the MAC address ``mac``."""
    records = session.call("VIF.get_all_records")
    return any(record["MAC"].lower() == mac.lower() for record in records.values())


def create_vif(
    session: PoolSession, host: str, uuid: str, operation: str, vm: str, vif: NetworkInterface
) -> str:
    """A VIF of the VM at its first free device number, not plugged.

    :raises computed.exception.InvalidRequest: if the network is unknown.
    :raises computed.exception.DeviceConflict: if the VM has no free VIF device.
    """
    network, network_record = find_network(session, operation, vif.network)
    free = session.call("VM.get_allowed_VIF_devices", vm)
    if not free:
        raise exception.DeviceConflict(
            device=f"interface {vif.port_id}",
            uuid=uuid,
            host=host,
            reason="the VM has no free VIF device",
        )
    record = {
        "device": str(free[0]),
        "network": network,
        "VM": vm,
        "MAC": vif.mac_address,
        "MTU": str(vif.mtu or network_record["MTU"]),
        "other_config": {
            constants.OTHER_CONFIG_PORT_ID: vif.port_id,
            constants.OTHER_CONFIG_NETWORK: vif.network,
        },
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    return str(session.call("VIF.create", record))
