"""Choosing the RPC version for each host, and fitting a message to it.

The version sent to a host is the oldest of: the client's own version, the
operator's pin (``[upgrade_levels] compute``) and what the workers that may
consume the host's queue report in the registry. A message that needs more
than that is backported when that is safe (versioned objects through
``obj_make_compatible``; informative arguments dropped) and refused at once,
without sending, when it is not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from computed import exception, version
from computed.conf.upgrade_levels import AUTO, AUTO_MIN, resolve_version
from computed.objects import ComputedObject
from computed.registry import WorkerRecord

__all__ = ["Cap", "host_cap", "fit_message", "parse_pin"]


@dataclasses.dataclass(frozen=True)
class Cap:
    """The newest version a host may be sent, and why."""

    version: str
    reason: str
    #: The oldest version the host's workers still serve.
    floor: str = "1.0"


def parse_pin(value: str) -> str:
    """``auto``, ``auto-min`` or a version (aliases resolved).

    :raises computed.exception.ConfigError: for anything else.
    """
    value = (value or AUTO).strip()
    if value in (AUTO, AUTO_MIN):
        return value
    try:
        return resolve_version(value, "compute")
    except ValueError as exc:
        raise exception.ConfigError(reason=f"{exc}, 'auto' or 'auto-min'") from None


def host_cap(pin: str, consumers: Iterable[WorkerRecord], live: Iterable[WorkerRecord]) -> Cap:
    """The cap of a host.

    :param pin: the parsed ``[upgrade_levels] compute``.
    :param consumers: the workers that may be consuming the host's queue.
    :param live: every live worker of the deployment (for ``auto-min``).
    """
    cap = Cap(version.RPC_API_VERSION, f"this client speaks {version.RPC_API_VERSION}")
    consumers = list(consumers)
    for worker in consumers:
        if version.newer(cap.version, worker.rpc_version):
            cap = Cap(worker.rpc_version, f"worker {worker.id} speaks {worker.rpc_version}")
    if pin == AUTO_MIN:
        for worker in live:
            if version.newer(cap.version, worker.rpc_version):
                cap = Cap(
                    worker.rpc_version,
                    f"pinned to the deployment minimum: worker {worker.id} speaks "
                    f"{worker.rpc_version}",
                )
    elif pin != AUTO and version.newer(cap.version, pin):
        cap = Cap(pin, f"pinned to {pin} by [upgrade_levels] compute")
    floor = max((w.rpc_min_version for w in consumers), key=version.parse, default="1.0")
    return dataclasses.replace(cap, floor=floor)


def fit_message(
    host: str, method: str, cap: Cap, kwargs: dict[str, Any]
) -> tuple[str, dict[str, Any], bool]:
    """The version to send ``method`` at, its arguments fitted to it, and whether they changed.

    :raises computed.exception.UnsupportedVersion: naming the host, the
        operation and the version it needs, if the host cannot take it.
    """
    needed = version.METHOD_VERSIONS[method]
    if version.newer(cap.floor, cap.version):
        raise exception.UnsupportedVersion(
            host=host,
            operation=method,
            version=cap.floor,
            reason=f"its workers serve nothing older than {cap.floor}, and this client "
            f"may send at most {cap.version} ({cap.reason}); upgrade the client",
        )
    if version.newer(needed, cap.version):
        raise _refuse(host, method, needed, cap)
    fitted = dict(kwargs)
    changed = False
    for argument, since in version.ARGUMENT_VERSIONS.get(method, {}).items():
        if fitted.get(argument) is None or not version.newer(since, cap.version):
            continue
        if argument not in version.DROPPABLE_ARGUMENTS.get(method, frozenset()):
            raise _refuse(host, f"{method}({argument}=...)", since, cap)
        del fitted[argument]
        changed = True
    objects = version.object_versions_at(cap.version)
    for name, value in fitted.items():
        if isinstance(value, ComputedObject):
            target = objects.get(value.obj_name(), value.VERSION)
            if version.newer(value.VERSION, target):
                loss = value.backport_loss(target)
                if loss is not None:
                    needed_for = version.rpc_version_of_object(value.obj_name(), value.VERSION)
                    raise _refuse(host, f"{method}: {loss}", needed_for, cap)
                fitted[name] = backport(value, target)
                changed = True
    return cap.version, fitted, changed


def backport(obj: ComputedObject, target: str) -> ComputedObject:
    """A copy of ``obj`` at version ``target``, through its ``obj_make_compatible``."""
    primitive = obj.obj_to_primitive(target_version=target)
    return type(obj).obj_from_primitive(primitive)


def _refuse(host: str, operation: str, needed: str, cap: Cap) -> exception.UnsupportedVersion:
    return exception.UnsupportedVersion(
        host=host,
        operation=operation,
        version=needed,
        reason=f"it may be sent at most {cap.version} ({cap.reason})",
    )
