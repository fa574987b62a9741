"""What a driver may return: each operation's result, checked against its declared type.

The return annotation of each operation of :class:`computed.manager.ComputeManager`
is the contract's word on what the operation answers. The worker checks every
result against it before it is journaled, notified or sent: the right Python
type, the right versioned object class, and an object version some RPC
version of the contract carries (:data:`computed.version.OBJECT_VERSIONS`).
A driver that returns anything else has failed, and its caller gets a
:class:`~computed.exception.DriverError` naming the driver and the
operation, not whatever a later step makes of the wrong value.

An operation added to the manager is checked as soon as it is annotated.
"""

from __future__ import annotations

import functools
import logging
import types
import typing
from collections.abc import Callable
from typing import Any

from oslo_versionedobjects import base as ovo_base

from computed import exception, version

__all__ = ["declared_return", "check_return", "describe"]

LOG = logging.getLogger(__name__)


@functools.cache
def declared_return(func: Callable[..., Any]) -> Any:
    """The return type ``func`` declares (its annotation, resolved); Any if none."""
    return typing.get_type_hints(func).get("return", Any)


@functools.cache
def _carried_versions(object_name: str) -> frozenset[str]:
    """Every version of ``object_name`` that some RPC version of the contract carries."""
    return frozenset(
        objects[object_name]
        for objects in version.OBJECT_VERSIONS.values()
        if object_name in objects
    )


def describe(declared: Any) -> str:
    """``declared`` as a reader would write it: ``InstanceInfo``, ``None``, ``str | None``."""
    if declared is None or declared is type(None):
        return "None"
    if _is_union(declared):
        return " | ".join(describe(arm) for arm in typing.get_args(declared))
    origin = typing.get_origin(declared)
    if origin is not None:
        args = ", ".join(describe(arg) for arg in typing.get_args(declared))
        return f"{origin.__name__}[{args}]"
    return str(getattr(declared, "__name__", declared))


def _is_union(declared: Any) -> bool:
    return typing.get_origin(declared) in (typing.Union, types.UnionType)


def _mismatch(value: Any, declared: Any) -> str | None:
    """Why ``value`` is not of type ``declared``, or None if it is."""
    if declared is Any:
        return None
    if declared is None or declared is type(None):
        return None if value is None else f"a {type(value).__name__}"
    if _is_union(declared):
        reasons = [_mismatch(value, arm) for arm in typing.get_args(declared)]
        return None if None in reasons else f"a {type(value).__name__}"
    origin = typing.get_origin(declared)
    if origin is not None:
        if not isinstance(value, origin):
            return f"a {type(value).__name__}"
        if origin is list and typing.get_args(declared):
            (item,) = typing.get_args(declared)
            for index, element in enumerate(value):
                reason = _mismatch(element, item)
                if reason is not None:
                    return f"a list whose item {index} is {reason}"
        return None
    if isinstance(declared, type) and issubclass(declared, ovo_base.VersionedObject):
        return _object_mismatch(value, declared)
    if declared is int and isinstance(value, bool):
        return "a bool"
    if isinstance(declared, type) and not isinstance(value, declared):
        return f"a {type(value).__name__}"
    return None


def _object_mismatch(value: Any, declared: type[ovo_base.VersionedObject]) -> str | None:
    if not isinstance(value, ovo_base.VersionedObject):
        return f"a {type(value).__name__}"
    name = value.obj_name()
    if name != declared.obj_name():
        return f"a {name} object"
    carried = _carried_versions(name)
    if carried and value.VERSION not in carried:
        return f"{name} {value.VERSION}, a version the contract does not carry"
    return None


def check_return(driver: str, host: str, operation: str, value: Any, declared: Any) -> Any:
    """Return ``value`` if it is of the ``declared`` type.

    :raises computed.exception.DriverError: naming the driver, the operation,
        what it returned and what it should have.
    """
    reason = _mismatch(value, declared)
    if reason is None:
        return value
    error = exception.DriverError(
        driver=driver,
        host=host,
        reason=f"{operation} returned {reason}, not {describe(declared)}",
    )
    LOG.error("%s", error)
    raise error
