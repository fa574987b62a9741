"""Consoles (contract 1.3): the ``<serial>``, ``<console>`` and ``<graphics>`` of a domain.

A spawn gives every instance a serial console and, unless ``[libvirt]
graphics_type`` is ``none``, a display:

* the serial console is a pseudo-terminal on the hypervisor host (protocol
  ``pty``, its path read from the running domain's XML), or, with
  ``[libvirt] serial_port_range``, a raw TCP socket on ``console_listen``
  and the lowest port of the range that no domain of the host uses
  (protocol ``tcp``), as nova's serial console proxy expects;
* the display is VNC or SPICE on ``console_listen``, its port chosen by
  libvirt when the domain starts (``autoport``), or with ``[libvirt]
  graphics_port_range`` the lowest port of the range no domain of the host
  uses; it is read from the running domain's XML, and a password set on it
  is the console's token.

Ports of a range are chosen among those no domain of the host names in its
XML (serial consoles, displays); the caller holds a lock from the choice to
the domain's definition, so that two spawns do not take the same one.

What is read back is the running domain's XML, whoever defined it: a
domain without such a console, or one whose hypervisor gives the console no
path or port (libvirt's test driver runs no guest, and gives neither), has
no console to offer, which is UnsupportedOperation.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable

from computed import exception
from computed.objects import ConsoleConnection, ConsoleKind
from drivers.libvirt import errors

__all__ = [
    "GRAPHICS_PROTOCOLS",
    "elements",
    "free_port",
    "graphical_console",
    "port_range",
    "serial_console",
    "used_ports",
]

#: The displays this driver offers, by libvirt's ``<graphics type>``.
GRAPHICS_PROTOCOLS = ("vnc", "spice")


def elements(
    listen: str, serial_port: int | None, graphics: str, graphics_port: int | None = None
) -> list[ET.Element]:
    """The console devices of a new domain.

    :param serial_port: the TCP port of the serial console; None for a pty.
    :param graphics: ``vnc``, ``spice`` or ``none``.
    :param graphics_port: the display's TCP port; None for libvirt's choice.
    """
    if serial_port is None:
        serial = ET.Element("serial", type="pty")
        console = ET.Element("console", type="pty")
    else:
        serial = ET.Element("serial", type="tcp")
        source = {"mode": "bind", "host": listen, "service": str(serial_port)}
        ET.SubElement(serial, "source", source)
        ET.SubElement(serial, "protocol", type="raw")
        console = ET.Element("console", type="tcp")
        ET.SubElement(console, "source", source)
        ET.SubElement(console, "protocol", type="raw")
    made = [serial, console]
    if graphics in GRAPHICS_PROTOCOLS:
        if graphics_port is None:
            display = ET.Element("graphics", type=graphics, autoport="yes", listen=listen)
        else:
            port = str(graphics_port)
            display = ET.Element("graphics", type=graphics, port=port, autoport="no", listen=listen)
        ET.SubElement(display, "listen", type="address", address=listen)
        made.append(display)
    return made


def port_range(text: str) -> tuple[int, int] | None:
    """``low:high`` as two ports, or None for an empty range (pty serial consoles).

    :raises computed.exception.ConfigError: if it is not two TCP ports, low first.
    """
    if not text:
        return None
    low, _, high = text.partition(":")
    first, last = int(low), int(high)
    if not 0 < first <= last < 65536:
        raise exception.ConfigError(
            reason=f"[libvirt] serial_port_range {text!r} must be low:high, 1 <= low <= high "
            "<= 65535"
        )
    return first, last


def used_ports(domains: Iterable[ET.Element]) -> set[int]:
    """The TCP ports the serial consoles and displays of ``domains`` (their XML) take."""
    used = set()
    for domain in domains:
        for source in domain.iterfind("devices/*[@type='tcp']/source"):
            used.add(_port(source.get("service")))
        for display in domain.iterfind("devices/graphics"):
            used.update(_port(display.get(attribute)) for attribute in ("port", "tlsPort"))
    used.discard(None)
    return used  # type: ignore[return-value]


def free_port(low: int, high: int, used: set[int]) -> int | None:
    """The lowest port from ``low`` to ``high`` not in ``used``, or None if all are."""
    return next((port for port in range(low, high + 1) if port not in used), None)


def serial_console(
    uuid: str, host: str, live: ET.Element, hypervisor: Callable[[], str]
) -> ConsoleConnection:
    """Where the first serial console of the running domain ``live`` is.

    :param hypervisor: the hypervisor host's address, for a wildcard listen address.
    :raises computed.exception.UnsupportedOperation: if it has none that can be reached.
    """
    operation = "get_serial_console"
    for serial in live.iterfind("devices/serial"):
        kind = serial.get("type")
        source = serial.find("source")
        if kind == "pty":
            path = (source.get("path") if source is not None else None) or serial.get("tty")
            if path:
                return _made(operation, uuid, ConsoleKind.SERIAL, "pty", path=path)
        elif kind == "tcp" and source is not None and source.get("mode", "bind") == "bind":
            port = _port(source.get("service"))
            if port is not None:
                address = _reachable(source.get("host"), hypervisor)
                return _made(operation, uuid, ConsoleKind.SERIAL, "tcp", host=address, port=port)
    raise _none(operation, host, "the domain has no serial console on a pty or a TCP port")


def graphical_console(
    uuid: str, host: str, live: ET.Element, hypervisor: Callable[[], str]
) -> ConsoleConnection:
    """Where the display of the running domain ``live`` (its secure XML) is.

    :raises computed.exception.UnsupportedOperation: if it has none with a port.
    """
    operation = "get_graphical_console"
    for display in live.iterfind("devices/graphics"):
        protocol = display.get("type", "")
        port = _port(display.get("port"))
        if protocol not in GRAPHICS_PROTOCOLS or port is None:
            continue
        listen = display.find("listen[@type='address']")
        address = display.get("listen") or (listen.get("address") if listen is not None else None)
        return _made(
            operation,
            uuid,
            ConsoleKind.GRAPHICAL,
            protocol,
            host=_reachable(address, hypervisor),
            port=port,
            token=display.get("passwd"),
        )
    raise _none(operation, host, "the domain has no VNC or SPICE display with a port")


def _made(
    operation: str, uuid: str, kind: str, protocol: str, **where: object
) -> ConsoleConnection:
    console = ConsoleConnection(instance_uuid=uuid, kind=kind, protocol=protocol, **where)
    console.obj_set_defaults()
    console.validate(operation)
    return console


def _port(text: str | None) -> int | None:
    """A TCP port, or None for none yet (libvirt writes -1 until it picks one)."""
    if text is None or not text.isdigit():
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _reachable(address: str | None, hypervisor: Callable[[], str]) -> str:
    """``address``, unless it is missing or a wildcard: then the hypervisor host's."""
    if not address:
        return hypervisor()
    try:
        if ipaddress.ip_address(address).is_unspecified:
            return hypervisor()
    except ValueError:
        pass  # a host name
    return address


def _none(operation: str, host: str, detail: str) -> exception.UnsupportedOperation:
    return exception.UnsupportedOperation(
        operation=operation, driver=errors.DRIVER, host=host, detail=detail
    )
