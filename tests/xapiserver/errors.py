"""xapi error codes and the exception the test server raises internally.

Every failure travels to the client as
``{'Status': 'Failure', 'ErrorDescription': [CODE, param, ...]}``; the
parameter lists follow the raising sites in the xen-api sources (see
README.md in this package for the file each one was checked against).
"""

from __future__ import annotations

from collections.abc import Iterable

HANDLE_INVALID = "HANDLE_INVALID"
UUID_INVALID = "UUID_INVALID"
SESSION_INVALID = "SESSION_INVALID"
SESSION_AUTHENTICATION_FAILED = "SESSION_AUTHENTICATION_FAILED"
MESSAGE_METHOD_UNKNOWN = "MESSAGE_METHOD_UNKNOWN"
MESSAGE_PARAMETER_COUNT_MISMATCH = "MESSAGE_PARAMETER_COUNT_MISMATCH"
FIELD_TYPE_ERROR = "FIELD_TYPE_ERROR"
INVALID_VALUE = "INVALID_VALUE"
INTERNAL_ERROR = "INTERNAL_ERROR"
MAP_DUPLICATE_KEY = "MAP_DUPLICATE_KEY"
OPERATION_NOT_ALLOWED = "OPERATION_NOT_ALLOWED"
OPERATION_BLOCKED = "OPERATION_BLOCKED"
OTHER_OPERATION_IN_PROGRESS = "OTHER_OPERATION_IN_PROGRESS"
VM_BAD_POWER_STATE = "VM_BAD_POWER_STATE"
VM_IS_TEMPLATE = "VM_IS_TEMPLATE"
VM_IS_SNAPSHOT = "VM_IS_SNAPSHOT"
ONLY_PROVISION_TEMPLATE = "ONLY_PROVISION_TEMPLATE"
HOST_NOT_ENOUGH_FREE_MEMORY = "HOST_NOT_ENOUGH_FREE_MEMORY"
HOST_OFFLINE = "HOST_OFFLINE"
NO_HOSTS_AVAILABLE = "NO_HOSTS_AVAILABLE"
MEMORY_CONSTRAINT_VIOLATION = "MEMORY_CONSTRAINT_VIOLATION"
VDI_IN_USE = "VDI_IN_USE"
EVENT_FROM_TOKEN_PARSE_FAILURE = "EVENT_FROM_TOKEN_PARSE_FAILURE"
TASK_CANCELLED = "TASK_CANCELLED"
VM_LACKS_FEATURE = "VM_LACKS_FEATURE"
DEVICE_ALREADY_EXISTS = "DEVICE_ALREADY_EXISTS"
DEVICE_ALREADY_ATTACHED = "DEVICE_ALREADY_ATTACHED"
DEVICE_ALREADY_DETACHED = "DEVICE_ALREADY_DETACHED"
INVALID_DEVICE = "INVALID_DEVICE"
MAC_INVALID = "MAC_INVALID"
VDI_INCOMPATIBLE_TYPE = "VDI_INCOMPATIBLE_TYPE"
VDI_READONLY = "VDI_READONLY"
VBD_CDS_MUST_BE_READONLY = "VBD_CDS_MUST_BE_READONLY"
VBD_NOT_REMOVABLE_MEDIA = "VBD_NOT_REMOVABLE_MEDIA"
VBD_NOT_UNPLUGGABLE = "VBD_NOT_UNPLUGGABLE"
SR_HAS_PBD = "SR_HAS_PBD"
SR_NO_PBDS = "SR_NO_PBDS"
SR_NOT_SHARABLE = "SR_NOT_SHARABLE"
SR_OPERATION_NOT_SUPPORTED = "SR_OPERATION_NOT_SUPPORTED"
SR_UNKNOWN_DRIVER = "SR_UNKNOWN_DRIVER"
PBD_EXISTS = "PBD_EXISTS"

DOM0_OPERATION_REASON = "Operations on domain 0 are not allowed"


class XapiError(Exception):
    """A xapi API error: ``code`` plus string parameters."""

    def __init__(self, code: str, *params: object) -> None:
        super().__init__(code, *params)
        self.code = code
        self.params = [str(p) for p in params]

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]

    def __str__(self) -> str:
        return f"{self.code} {self.params}"


def failure(description: Iterable[object]) -> dict[str, object]:
    """The xapi wire form of a failed call."""
    return {"Status": "Failure", "ErrorDescription": [str(d) for d in description]}


def success(value: object) -> dict[str, object]:
    """The xapi wire form of a successful call (value already marshalled)."""
    return {"Status": "Success", "Value": value}


def handle_invalid(cls: str, ref: object) -> XapiError:
    return XapiError(HANDLE_INVALID, cls, ref)


def uuid_invalid(cls: str, uuid: object) -> XapiError:
    return XapiError(UUID_INVALID, cls, uuid)


def field_type_error(field: str) -> XapiError:
    return XapiError(FIELD_TYPE_ERROR, field)
