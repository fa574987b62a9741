"""libvirt's errors in the project's terms, at the driver's boundary.

Every mapped exception is raised ``from`` the libvirtError, which keeps
libvirt's error code and message in the worker's logs. InstanceNotFound and
InvalidPowerState carry exactly what every other driver's do; DriverError
and UnsupportedOperation also carry libvirt's error code and message as the
JSON-safe attributes ``error_code`` and ``detail``, which survive the trip
over RPC.
"""

from __future__ import annotations

import libvirt

from computed import exception
from drivers import base

__all__ = ["DRIVER", "code_of", "is_connection_error", "translate"]

#: The driver's name as it appears in the errors it raises.
DRIVER = "libvirt"

_UNSUPPORTED = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED})

# Errors of the remote protocol meaning the connection itself is gone.
_CONNECTION_CODES = frozenset(
    {
        libvirt.VIR_ERR_SYSTEM_ERROR,
        libvirt.VIR_ERR_INTERNAL_ERROR,
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_RPC,
    }
)
_CONNECTION_DOMAINS = frozenset({libvirt.VIR_FROM_REMOTE, libvirt.VIR_FROM_RPC})


def code_of(exc: libvirt.libvirtError) -> int:
    """libvirt's error code of ``exc`` (0 when libvirt gave none)."""
    return exc.get_error_code() or 0


def is_connection_error(exc: libvirt.libvirtError) -> bool:
    """True if ``exc`` says the connection to libvirtd broke, not the operation."""
    return code_of(exc) in _CONNECTION_CODES and exc.get_error_domain() in _CONNECTION_DOMAINS


def translate(
    exc: libvirt.libvirtError,
    *,
    host: str,
    operation: str,
    uuid: str | None = None,
    state: str | None = None,
) -> exception.ComputedError:
    """The project's exception for ``exc``; the caller raises it ``from exc``.

    :param operation: the contract operation, or a transition key such as
        ``reboot.hard``.
    :param uuid: the instance concerned, if any; needed for InstanceNotFound.
    :param state: the instance's current power state, if known; needed for
        InvalidPowerState.
    """
    code = code_of(exc)
    detail = exc.get_error_message() or str(exc)
    if code == libvirt.VIR_ERR_NO_DOMAIN and uuid is not None:
        return exception.InstanceNotFound(uuid=uuid, host=host)
    if (
        code == libvirt.VIR_ERR_OPERATION_INVALID
        and uuid is not None
        and state is not None
        and operation in base.TRANSITIONS
    ):
        allowed = ", ".join(sorted(base.TRANSITIONS[operation].allowed))
        return exception.InvalidPowerState(
            uuid=uuid, operation=operation, state=state, allowed=allowed
        )
    if code in _UNSUPPORTED:
        return exception.UnsupportedOperation(
            operation=operation, driver=DRIVER, host=host, error_code=code, detail=detail
        )
    return exception.DriverError(
        driver=DRIVER,
        host=host,
        reason=f"{operation}: {detail} (libvirt error {code})",
        error_code=code,
        detail=detail,
    )
