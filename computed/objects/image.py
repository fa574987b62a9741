"""Images taken from instances and the consoles of instances (contract 1.3).

A snapshot leaves an image where the host's backend keeps images (a file or
a storage-pool volume for libvirt, a snapshot VM and its VDIs for XenAPI, a
checkpoint for Hyper-V); :class:`ImageRef` says which, in terms the same
host understands again (``delete_image``). A console is reached directly at
the hypervisor: :class:`ConsoleConnection` carries what a console proxy
needs to connect to it.
"""

from __future__ import annotations

import re
from typing import Any

from oslo_versionedobjects import fields

from computed import exception
from computed.objects.base import ComputedObject, ComputedObjectRegistry

__all__ = [
    "ImageRef",
    "ConsoleConnection",
    "ConsoleKind",
    "CONSOLE_PROTOCOLS",
    "MAX_IMAGE_NAME_LENGTH",
    "check_image_name",
]

MAX_IMAGE_NAME_LENGTH = 255

#: Image names become file names and labels on the hypervisor: no path
#: separators, no control characters, no leading dot or space.
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+= -]*$")


class ConsoleKind(fields.Enum):
    """``serial``: the instance's serial port; ``graphical``: its display."""

    SERIAL = "serial"
    GRAPHICAL = "graphical"

    ALL = (SERIAL, GRAPHICAL)

    def __init__(self) -> None:
        super().__init__(valid_values=ConsoleKind.ALL)


class ConsoleKindField(fields.BaseEnumField):
    AUTO_TYPE = ConsoleKind()


#: The protocols each kind of console may be offered in. ``tcp`` is a raw
#: socket carrying the serial line, ``pty`` a pseudo-terminal on the host,
#: ``pipe`` a named pipe on the host (Hyper-V); ``vnc`` (RFB), ``spice`` and
#: ``rdp`` are displays.
CONSOLE_PROTOCOLS: dict[str, frozenset[str]] = {
    ConsoleKind.SERIAL: frozenset({"tcp", "pty", "pipe"}),
    ConsoleKind.GRAPHICAL: frozenset({"vnc", "spice", "rdp"}),
}


@ComputedObjectRegistry.register
class ImageRef(ComputedObject):
    """An image a snapshot made, as its host refers to it.

    ``image_id`` is the host's own identifier (opaque to the caller, given
    back to ``delete_image``); ``location`` says where it lands in the
    backend's terms (a path, ``pool/volume``, a VM or checkpoint id).

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "image_id": fields.StringField(),
        "name": fields.StringField(),
        "instance_uuid": fields.UUIDField(),
        "host": fields.StringField(),
        "location": fields.StringField(),
        "disk_format": fields.StringField(),
        "size_bytes": fields.IntegerField(nullable=True, default=None),
    }


@ComputedObjectRegistry.register
class ConsoleConnection(ComputedObject):
    """Where to reach an instance's console.

    ``host`` and ``port`` for a network console (``tcp``, ``vnc``, ``spice``,
    ``rdp``); ``path`` for a local one (``pty``, ``pipe``) or, beside host
    and port, what the connection must ask for (the VM id an RDP console
    selects, the path of an HTTP console). ``token`` is the password or
    ticket the console takes, where the hypervisor has one; it is a secret.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "instance_uuid": fields.UUIDField(),
        "kind": ConsoleKindField(),
        "protocol": fields.StringField(),
        "host": fields.StringField(nullable=True, default=None),
        "port": fields.IntegerField(nullable=True, default=None),
        "path": fields.StringField(nullable=True, default=None),
        "token": fields.SensitiveStringField(nullable=True, default=None),
    }

    def validate(self, operation: str) -> None:
        """:raises computed.exception.DriverError: if a driver made an unusable console."""
        allowed = CONSOLE_PROTOCOLS[self.kind]
        if self.protocol not in allowed:
            raise ValueError(
                f"{operation}: a {self.kind} console's protocol must be one of "
                f"{', '.join(sorted(allowed))}, got {self.protocol!r}"
            )
        if self.path is None and (self.host is None or self.port is None):
            raise ValueError(f"{operation}: a console needs a host and port, or a path")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"{operation}: console port {self.port} is not a TCP port")


def check_image_name(operation: str, name: Any) -> None:
    """:raises computed.exception.InvalidRequest: unless ``name`` can name an image on any host."""
    if not (
        isinstance(name, str)
        and 0 < len(name) <= MAX_IMAGE_NAME_LENGTH
        and _IMAGE_NAME.match(name)
        and name.strip() == name
    ):
        raise exception.InvalidRequest(
            operation=operation,
            reason=f"an image name must be 1 to {MAX_IMAGE_NAME_LENGTH} letters, digits, "
            f"spaces and _.:@+=- (not first: . or a space), got {str(name)[:40]!r}",
        )
