"""The project's exceptions, shared by the worker, the drivers and the client.

Every error a caller can see derives from :class:`ComputedError`. Each class
carries its context as keyword arguments (kept in ``kwargs``, all JSON-safe)
and formats its message from ``_msg_fmt``, so that oslo.messaging can rebuild
the same exception on the client side: the worker raises
``InstanceNotFound(uuid=..., host=...)`` and the scheduler catches
``InstanceNotFound`` with the same attributes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ComputedError",
    "InvalidRequest",
    "InstanceNotFound",
    "InvalidPowerState",
    "DeviceNotFound",
    "DeviceConflict",
    "UnsupportedOperation",
    "UnsupportedVersion",
    "HostUnavailable",
    "HostTimeout",
    "HostDisabled",
    "InsufficientResources",
    "OperationInterrupted",
    "MigrationError",
    "MigrationPreCheckFailed",
    "MigrationAborted",
    "MigrationNotFound",
    "InvalidMigrationState",
    "RPCError",
    "BrokerUnavailable",
    "DriverError",
    "DriverLoadError",
    "RegistryError",
    "ConfigError",
]


class ComputedError(Exception):
    """Root of the project's exceptions.

    :param message: overrides the formatted message (used when oslo.messaging
        rebuilds a remote exception, which passes the original text back).
    :param kwargs: the context; each becomes an attribute and fills ``_msg_fmt``.
    """

    _msg_fmt = "An unknown error occurred."
    #: Expected failures are the caller's business: the worker logs them
    #: without a traceback.
    expected = False

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        for key, value in kwargs.items():
            setattr(self, key, value)
        if message is None:
            try:
                message = self._msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                message = f"{self._msg_fmt} ({kwargs!r})"
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self._msg_fmt


class InvalidRequest(ComputedError):
    _msg_fmt = "Invalid request for %(operation)s: %(reason)s"
    expected = True


class InstanceNotFound(ComputedError):
    _msg_fmt = "Instance %(uuid)s not found on host %(host)s."
    expected = True


class InvalidPowerState(ComputedError):
    _msg_fmt = (
        "Cannot %(operation)s instance %(uuid)s: it is %(state)s, "
        "and %(operation)s needs one of: %(allowed)s."
    )
    expected = True


class DeviceNotFound(ComputedError):
    """A volume or interface that the operation needs is not attached (contract 1.2)."""

    _msg_fmt = "%(device)s is not attached to instance %(uuid)s on host %(host)s."
    expected = True


class DeviceConflict(ComputedError):
    """A device cannot be attached as asked: its name, MAC address or slot is taken."""

    _msg_fmt = "Cannot attach %(device)s to instance %(uuid)s on host %(host)s: %(reason)s"
    expected = True


class UnsupportedOperation(ComputedError):
    _msg_fmt = "Operation %(operation)s is not supported by the %(driver)s driver on host %(host)s."
    expected = True


class UnsupportedVersion(ComputedError):
    _msg_fmt = "Host %(host)s cannot serve %(operation)s at RPC version %(version)s: %(reason)s"
    expected = True


class HostUnavailable(ComputedError):
    _msg_fmt = "Host %(host)s is unavailable: %(reason)s"
    expected = True


class HostTimeout(ComputedError):
    _msg_fmt = "Host %(host)s did not answer %(operation)s within %(timeout)s s."
    expected = True


class HostDisabled(ComputedError):
    """An operator disabled the host (``computedctl host disable``): it takes no new instance."""

    _msg_fmt = "Host %(host)s is disabled and takes no new instance: %(reason)s"
    expected = True


class InsufficientResources(ComputedError):
    """What an operation asked of a host exceeds what it has free under its allocation ratio.

    ``free`` is the host's capacity (``total`` times ``ratio``) less what its
    instances use and what operations in flight have claimed.
    """

    _msg_fmt = (
        "Host %(host)s cannot take %(operation)s: %(resource)s requested %(requested)s, "
        "free %(free)s of %(total)s (allocation ratio %(ratio)s)."
    )
    expected = True


class OperationInterrupted(ComputedError):
    _msg_fmt = (
        "%(operation)s of instance %(uuid)s on host %(host)s was interrupted when worker "
        "%(worker)s stopped, and is not repeated: %(reason)s"
    )


class MigrationError(ComputedError):
    """A move of an instance failed; ``reason`` says where the instance is now."""

    _msg_fmt = "%(migration)s failed: %(reason)s"
    expected = True


class MigrationPreCheckFailed(MigrationError):
    """The destination cannot take the instance (capacity, CPU, networks, its driver)."""

    _msg_fmt = "Host %(host)s cannot take instance %(uuid)s: %(reason)s"


class MigrationAborted(MigrationError):
    """A live migration stopped on request; the instance runs on its source."""

    _msg_fmt = "Live migration %(migration)s of instance %(uuid)s was aborted: %(reason)s"


class MigrationNotFound(ComputedError):
    _msg_fmt = "Migration %(migration)s is not in the registry."
    expected = True


class InvalidMigrationState(ComputedError):
    _msg_fmt = "Cannot %(operation)s migration %(migration)s: it is %(status)s, and %(operation)s needs %(allowed)s."
    expected = True


class RPCError(ComputedError):
    """The message to a host could not be delivered or answered properly."""

    _msg_fmt = "RPC %(operation)s to host %(host)s failed: %(reason)s"


class BrokerUnavailable(ComputedError):
    _msg_fmt = "Cannot reach the message broker at %(url)s: %(reason)s"


class DriverError(ComputedError):
    """A hypervisor failure the driver could not map to a more precise error."""

    _msg_fmt = "The %(driver)s driver failed on host %(host)s: %(reason)s"


class DriverLoadError(ComputedError):
    _msg_fmt = "Cannot load driver %(driver)r: %(reason)s"


class RegistryError(ComputedError):
    _msg_fmt = "Registry error: %(reason)s"


class ConfigError(ComputedError):
    _msg_fmt = "Configuration error: %(reason)s"
