"""xapi's failures in the project's terms, at the driver's boundary.

xapi reports a failure as ``[CODE, param, ...]`` (``XenAPI.Failure.details``).
Every mapped exception is raised ``from`` the Failure, which keeps the code
and parameters in the worker's logs. DriverError and UnsupportedOperation
also carry them as the JSON-safe attributes ``error_code`` and
``error_params``, which survive the trip over RPC.

=================================  ===========================================
xapi code                          project exception
=================================  ===========================================
HANDLE_INVALID (of a VM)           InstanceNotFound
VM_BAD_POWER_STATE                 InvalidPowerState, worded by plan_transition
VM_BAD_POWER_STATE (other ops)     InvalidPowerState, allowed the states the
                                   contract gives the operation (devices,
                                   snapshot, consoles)
VM_IS_TEMPLATE                     InvalidRequest
SESSION_AUTHENTICATION_FAILED      DriverError naming the pool and the user
MESSAGE_METHOD_UNKNOWN             UnsupportedOperation
SR_OPERATION_NOT_SUPPORTED         UnsupportedOperation (snapshot: the disk's SR
(snapshot)                         cannot snapshot, e.g. an iSCSI volume)
DEVICE_ALREADY_EXISTS              DeviceConflict (a VBD or VIF slot is taken)
VDI_IN_USE (attaching)             DeviceConflict (the volume is in use elsewhere)
INVALID_DEVICE, MAC_INVALID        InvalidRequest
anything else                      DriverError with the code and parameters
=================================  ===========================================
"""

from __future__ import annotations

from typing import Any

from computed import exception
from drivers import base
from drivers.xenapi import constants

__all__ = [
    "DEVICE_ALREADY_ATTACHED",
    "DEVICE_ALREADY_DETACHED",
    "DEVICE_ALREADY_EXISTS",
    "EVENT_FROM_TOKEN_PARSE_FAILURE",
    "HANDLE_INVALID",
    "UUID_INVALID",
    "PoolUnavailable",
    "MESSAGE_METHOD_UNKNOWN",
    "SESSION_AUTHENTICATION_FAILED",
    "SR_OPERATION_NOT_SUPPORTED",
    "VM_BAD_POWER_STATE",
    "VM_IS_TEMPLATE",
    "code_of",
    "params_of",
    "translate",
]

HANDLE_INVALID = "HANDLE_INVALID"
UUID_INVALID = "UUID_INVALID"
DEVICE_ALREADY_ATTACHED = "DEVICE_ALREADY_ATTACHED"
DEVICE_ALREADY_DETACHED = "DEVICE_ALREADY_DETACHED"
DEVICE_ALREADY_EXISTS = "DEVICE_ALREADY_EXISTS"
VDI_IN_USE = "VDI_IN_USE"
_BAD_REQUEST = ("INVALID_DEVICE", "MAC_INVALID")
_ATTACHING = ("spawn", "attach_volume", "attach_interface")
VM_BAD_POWER_STATE = "VM_BAD_POWER_STATE"
VM_IS_TEMPLATE = "VM_IS_TEMPLATE"
SESSION_AUTHENTICATION_FAILED = "SESSION_AUTHENTICATION_FAILED"
MESSAGE_METHOD_UNKNOWN = "MESSAGE_METHOD_UNKNOWN"
SR_OPERATION_NOT_SUPPORTED = "SR_OPERATION_NOT_SUPPORTED"
EVENT_FROM_TOKEN_PARSE_FAILURE = "EVENT_FROM_TOKEN_PARSE_FAILURE"
#: The states operations outside the transition table run in.
_STATE_BOUND: dict[str, frozenset[str]] = {
    **dict.fromkeys(base.DEVICE_OPERATIONS, base.DEVICE_STATES),
    "snapshot": base.SNAPSHOT_STATES,
    **dict.fromkeys(base.CONSOLE_OPERATIONS, base.CONSOLE_STATES),
}


class PoolUnavailable(Exception):
    """The pool could not be reached or did not answer properly (not an xapi failure).

    Raised by :mod:`~drivers.xenapi.session`, whose message names the pool and
    its URL but never a credential; :func:`translate` turns it into a
    DriverError with ``error_code`` ``code``.
    """

    def __init__(self, reason: str, code: str = "POOL_UNAVAILABLE") -> None:
        super().__init__(reason)
        self.code = code


def _allowed_states(operation: str) -> frozenset[str] | None:
    """The power states ``operation`` runs in, if the contract bounds them."""
    if operation in base.TRANSITIONS:
        return base.TRANSITIONS[operation].allowed
    return _STATE_BOUND.get(operation)


def code_of(exc: Any) -> str:
    """The xapi error code of a ``XenAPI.Failure`` (``""`` if it has none)."""
    details = getattr(exc, "details", None) or [""]
    return str(details[0])


def params_of(exc: Any) -> list[str]:
    """The parameters following the code, as strings."""
    details = getattr(exc, "details", None) or [""]
    return [str(p) for p in details[1:]]


def translate(
    exc: Any,
    *,
    host: str,
    pool: str,
    operation: str,
    uuid: str | None = None,
) -> exception.ComputedError:
    """The project's exception for ``exc``; the caller raises it ``from exc``.

    :param exc: a ``XenAPI.Failure`` or a :class:`PoolUnavailable`.

    :param operation: the contract operation, or a transition key such as
        ``reboot.hard``.
    :param uuid: the instance concerned, if any; needed for InstanceNotFound
        and InvalidPowerState.
    """
    if isinstance(exc, PoolUnavailable):
        return exception.DriverError(
            driver=constants.DRIVER,
            host=host,
            reason=f"{operation}: {exc}",
            pool=pool,
            error_code=exc.code,
            error_params=[],
        )
    code = code_of(exc)
    params = params_of(exc)
    if code == HANDLE_INVALID and uuid is not None and params[:1] == ["VM"]:
        return exception.InstanceNotFound(uuid=uuid, host=host)
    allowed = _allowed_states(operation)
    if code == VM_BAD_POWER_STATE and uuid is not None and allowed is not None:
        state = constants.power_state(params[2]) if len(params) > 2 else "unknown"
        return exception.InvalidPowerState(
            uuid=uuid, operation=operation, state=state, allowed=", ".join(sorted(allowed))
        )
    if code == DEVICE_ALREADY_EXISTS or (code == VDI_IN_USE and operation in _ATTACHING):
        taken = f"slot {params[0]}" if code == DEVICE_ALREADY_EXISTS else "the volume"
        return exception.DeviceConflict(
            device=params[0] if params else "?",
            uuid=uuid or "-",
            host=host,
            reason=f"{taken} is in use (xapi {code} on pool {pool})",
        )
    if code in _BAD_REQUEST:
        return exception.InvalidRequest(
            operation=operation, reason=f"pool {pool} refused it: {code} {params}"
        )
    if code == VM_IS_TEMPLATE:
        return exception.InvalidRequest(
            operation=operation, reason=f"pool {pool}: the VM is a template ({code} {params})"
        )
    if code == SESSION_AUTHENTICATION_FAILED:
        user = params[0] if params else "?"
        return exception.DriverError(
            driver=constants.DRIVER,
            host=host,
            reason=f"pool {pool} refused the login of user {user!r}: "
            "check [xenapi] username and password",
            pool=pool,
            error_code=code,
            error_params=params[:1],
        )
    if code == MESSAGE_METHOD_UNKNOWN or (
        code == SR_OPERATION_NOT_SUPPORTED and operation == "snapshot"
    ):
        return exception.UnsupportedOperation(
            operation=operation,
            driver=constants.DRIVER,
            host=host,
            pool=pool,
            error_code=code,
            error_params=params,
        )
    return exception.DriverError(
        driver=constants.DRIVER,
        host=host,
        reason=f"{operation} on pool {pool}: xapi error {code} {params}",
        pool=pool,
        error_code=code,
        error_params=params,
    )
