"""WinRM and PowerShell failures in the project's terms, at the driver's boundary.

Two kinds of failure reach here. Transport failures (connection refused,
timeouts, TLS, HTTP 401, WS-Management faults) become DriverError naming
the host's endpoint and never the credentials. A script that ran and failed
becomes a :class:`~drivers.hyperv.powershell.PowerShellError`, which
:func:`translate` maps by PowerShell's FullyQualifiedErrorId and CategoryInfo,
never by the message, which Windows words in the host's language:

==============================================  =============================
PowerShell (FullyQualifiedErrorId)              project
==============================================  =============================
``InvalidParameter,...GetVM``                   InstanceNotFound
``InvalidState``                                InvalidPowerState
``CommandNotFoundException``,                   UnsupportedOperation (the
parameter binding errors                        host's Hyper-V module lacks it)
``InvalidParameter`` during spawn               InvalidRequest
``InvalidParameter,...AddVMNetworkAdapter``,    InvalidRequest (the network or
``ObjectNotFound,...AddVMHardDiskDrive``        the volume's file is not there)
``InvalidState`` of a device change             InvalidPowerState (see deviceops)
anything else, or no error record at all        DriverError
==============================================  =============================

Whether an instance exists never depends on an error record: the driver
looks its VM up with ``-ErrorAction SilentlyContinue`` (nothing back: no such
VM), so a host that sends no stderr at all still reports a missing instance
as InstanceNotFound.

DriverError and UnsupportedOperation also carry PowerShell's error id and
message as the JSON-safe attributes ``error_id`` and ``detail``.
"""

from __future__ import annotations

import re

import requests
from urllib3.exceptions import MaxRetryError
from winrm import exceptions as winrm_exc

from computed import exception
from drivers import base
from drivers.hyperv.constants import DRIVER
from drivers.hyperv.powershell import PowerShellError

__all__ = ["describe_transport_error", "is_not_found", "translate"]

_COMMANDS = "Microsoft.HyperV.PowerShell.Commands."
#: Get-VM's error for an Id it does not know (not Get-VMSnapshot's: only the VM
#: itself is missing here).
_NOT_FOUND = f"InvalidParameter,{_COMMANDS}GetVM"
#: What a caller named that the host does not have: a switch, a volume's file.
_MISSING_INPUT = frozenset(
    {
        f"InvalidParameter,{_COMMANDS}AddVMNetworkAdapter",
        f"InvalidParameter,{_COMMANDS}NewVM",
        f"ObjectNotFound,{_COMMANDS}AddVMHardDiskDrive",
    }
)
_UNSUPPORTED_IDS = frozenset(
    {
        "CommandNotFoundException",
        "NamedParameterNotFound",
        "ParameterArgumentTransformationError",
        "ParameterArgumentValidationError",
        "PositionalParameterNotFound",
    }
)
_OBJECT_REPR = re.compile(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*")


def is_not_found(error: PowerShellError) -> bool:
    """True if Hyper-V said the VM does not exist (by its error id, in any language)."""
    return error.error_id == _NOT_FOUND


def translate(
    error: PowerShellError,
    *,
    host: str,
    operation: str,
    uuid: str | None = None,
    state: str | None = None,
) -> exception.ComputedError:
    """The project's exception for ``error``; the caller raises it ``from error``.

    :param operation: the contract operation, or a transition key such as ``reboot.soft``.
    :param uuid: the instance concerned, if any; needed for InstanceNotFound.
    :param state: the instance's power state when Hyper-V refused, if known;
        needed for InvalidPowerState.
    """
    if is_not_found(error) and uuid is not None:
        return exception.InstanceNotFound(uuid=uuid, host=host)
    if (
        error.short_id == "InvalidState"
        and uuid is not None
        and state is not None
        and operation in base.TRANSITIONS
    ):
        allowed = ", ".join(sorted(base.TRANSITIONS[operation].allowed))
        return exception.InvalidPowerState(
            uuid=uuid, operation=operation, state=state, allowed=allowed
        )
    if error.short_id in _UNSUPPORTED_IDS or "ParameterBindingException" in error.category:
        return exception.UnsupportedOperation(
            operation=operation,
            driver=DRIVER,
            host=host,
            error_id=error.error_id,
            detail=error.message,
        )
    if operation == "spawn" and error.short_id == "InvalidParameter":
        return exception.InvalidRequest(operation="spawn", reason=f"Hyper-V: {error.message}")
    if error.error_id in _MISSING_INPUT:
        return exception.InvalidRequest(operation=operation, reason=f"Hyper-V: {error.message}")
    return exception.DriverError(
        driver=DRIVER,
        host=host,
        reason=f"{operation}: {error.message} ({error.error_id or 'no error id'})",
        error_id=error.error_id,
        detail=error.message,
    )


def describe_transport_error(exc: BaseException, url: str) -> str:
    """One line saying why ``url`` could not run a script; no credentials in it."""
    if isinstance(exc, winrm_exc.InvalidCredentialsError):
        return f"{url} refused the credentials (HTTP 401); check [hyperv] username and password"
    if isinstance(exc, winrm_exc.AuthenticationError):
        return f"{url} refused to authenticate: {exc}"
    if isinstance(exc, winrm_exc.WSManFaultError):
        return f"WinRM fault {exc.wsman_fault_code} from {url}: {exc.reason}"
    if isinstance(exc, winrm_exc.WinRMTransportError):
        return f"{url} answered HTTP {exc.code}"
    if isinstance(exc, winrm_exc.WinRMOperationTimeoutError):
        return f"{url}: the WinRM operation timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS with {url} failed: {_cause(exc)}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"cannot connect to {url}: timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"{url} did not answer in time ([hyperv] read_timeout)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot connect to {url}: {_cause(exc)}"
    return f"WinRM to {url} failed: {type(exc).__name__}: {exc}"


def _cause(exc: requests.exceptions.RequestException) -> str:
    """The innermost reason of a requests error, without urllib3's object reprs."""
    inner: object = exc.args[0] if exc.args else exc
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    text = _OBJECT_REPR.sub("", str(inner))
    return text.strip("() ") or type(exc).__name__
