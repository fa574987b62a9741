"""What a check is, how checks are registered, and which operation group each rates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from computed.conformance._context import SuiteContext
from drivers import base

__all__ = ["Check", "registrar", "group_of"]

#: The group of checks about no operation in particular (errors, concurrency, casts).
LIFECYCLE = "lifecycle"


@dataclass(frozen=True)
class Check:
    id: str
    purpose: str
    run: Callable[[SuiteContext], None]
    #: The key of :data:`drivers.base.OPERATION_GROUPS` whose result this check counts in.
    group: str = LIFECYCLE


CheckFunction = Callable[[SuiteContext], None]


class Register(Protocol):
    def __call__(
        self, check_id: str, purpose: str, group: str = ...
    ) -> Callable[[CheckFunction], CheckFunction]: ...


def registrar(checks: list[Check]) -> Register:
    """A ``@check(id, purpose, group="lifecycle")`` decorator that appends to ``checks``."""

    def check(
        check_id: str, purpose: str, group: str = LIFECYCLE
    ) -> Callable[[CheckFunction], CheckFunction]:
        if group not in base.OPERATION_GROUPS:
            raise ValueError(f"check {check_id}: unknown group {group!r}")

        def register(func: CheckFunction) -> CheckFunction:
            checks.append(Check(check_id, purpose, func, group))
            return func

        return register

    return check


def group_of(operation: str) -> str:
    """The group of an operation, or of a feature (``reboot.soft``, ``spawn.volumes``)."""
    name = operation.split(".", 1)[0]
    for group, operations in base.OPERATION_GROUPS.items():
        if name in operations:
            return group
    return LIFECYCLE
