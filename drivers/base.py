"""The contract a hypervisor driver implements.

A driver is a class registered in the ``computed.drivers`` entry-point
namespace. The worker makes one instance and calls it for every host it
serves, always passing the host name, so one driver object may manage
several hypervisors. The worker serializes operations on one instance UUID,
so a driver need not guard against two operations on the same instance at
once, but operations on different instances may run concurrently.

Semantics every driver honours (the fake driver is their executable form):

* Operations are idempotent by instance UUID: spawning an existing UUID
  returns that instance without making a second one; destroying a missing
  instance succeeds.
* :data:`TRANSITIONS` says which power states each lifecycle operation
  starts from and where it leads. An operation whose target state already
  holds is a no-op that succeeds; one started from any other state raises
  :class:`~computed.exception.InvalidPowerState`. :func:`plan_transition`
  applies that table.
* Backend errors are mapped onto the project's exceptions at the driver's
  boundary (``raise ... from``): a missing instance is
  :class:`~computed.exception.InstanceNotFound`, a wrong state is
  :class:`~computed.exception.InvalidPowerState`, anything the driver cannot
  do is :class:`~computed.exception.UnsupportedOperation`, and other failures
  are :class:`~computed.exception.DriverError`.
* :attr:`ComputeDriver.operations` declares what the driver supports; the
  worker refuses the rest before calling the driver.
"""

from __future__ import annotations

import abc
import enum
from typing import ClassVar, NamedTuple

from oslo_config import cfg

from computed import exception
from computed.objects import HostResources, InstanceInfo, InstanceSpec, PowerState

__all__ = [
    "ComputeDriver",
    "TransitionDriver",
    "SupportTier",
    "Transition",
    "TRANSITIONS",
    "LIFECYCLE_OPERATIONS",
    "ALL_OPERATIONS",
    "OPERATIONS_1_0",
    "REBOOT_TYPES",
    "plan_transition",
]


class SupportTier(enum.StrEnum):
    """How far a driver is known to honour the contract."""

    CONFORMANT = "conformant"
    PARTIAL = "partial"
    UNTESTED = "untested"


class Transition(NamedTuple):
    """Where a lifecycle operation may start, and where it leads."""

    allowed: frozenset[str]
    target: str
    #: Whether the operation is a no-op when the target state already holds.
    idempotent: bool = True


_S = PowerState
TRANSITIONS: dict[str, Transition] = {
    "power_on": Transition(frozenset({_S.STOPPED}), _S.RUNNING),
    "power_off": Transition(frozenset({_S.RUNNING, _S.PAUSED, _S.SUSPENDED}), _S.STOPPED),
    "pause": Transition(frozenset({_S.RUNNING}), _S.PAUSED),
    "unpause": Transition(frozenset({_S.PAUSED}), _S.RUNNING),
    "suspend": Transition(frozenset({_S.RUNNING}), _S.SUSPENDED),
    "resume": Transition(frozenset({_S.SUSPENDED}), _S.RUNNING),
    "reboot.soft": Transition(frozenset({_S.RUNNING}), _S.RUNNING, idempotent=False),
    "reboot.hard": Transition(frozenset({_S.RUNNING, _S.PAUSED}), _S.RUNNING, idempotent=False),
}

REBOOT_TYPES = ("soft", "hard")

#: Operations that change an instance; as casts their outcome is notified.
LIFECYCLE_OPERATIONS = (
    "spawn",
    "destroy",
    "reboot",
    "power_on",
    "power_off",
    "pause",
    "unpause",
    "suspend",
    "resume",
)

#: The operations of contract version 1.0, which a driver gets by default.
#: An operation added by a later minor version is never claimed by default:
#: a driver lists it in :attr:`ComputeDriver.operations` once it implements it.
OPERATIONS_1_0 = LIFECYCLE_OPERATIONS + (
    "get_info",
    "list_instances",
    "get_host_resources",
    "get_capabilities",
    "ping",
)

#: Every operation of the contract (see ``computed.version.METHOD_VERSIONS``).
ALL_OPERATIONS = OPERATIONS_1_0 + ("get_console_output",)


def plan_transition(operation: str, uuid: str, state: str) -> bool:
    """Decide whether ``operation`` must act on an instance in ``state``.

    :param operation: a key of :data:`TRANSITIONS` (``reboot.soft`` for a soft reboot).
    :returns: True if the driver must act, False if the target state already holds.
    :raises computed.exception.InvalidPowerState: if the operation cannot start from ``state``.
    """
    transition = TRANSITIONS[operation]
    if state in transition.allowed:
        return True
    if transition.idempotent and state == transition.target:
        return False
    raise exception.InvalidPowerState(
        uuid=uuid,
        operation=operation,
        state=state,
        allowed=", ".join(sorted(transition.allowed)),
    )


class ComputeDriver(abc.ABC):
    """Base class of every driver.

    Subclasses set :attr:`name`, :attr:`version`, :attr:`operations`,
    :attr:`features` and :attr:`support_tier`, and implement the abstract
    methods. Methods for operations left out of :attr:`operations` are never
    called; the defaults raise UnsupportedOperation.
    """

    #: The entry-point name, as reported in the registry and capabilities.
    name: ClassVar[str] = "base"
    #: The driver's own version (its package version, typically).
    version: ClassVar[str] = "0"
    #: The contract operations this driver supports (by default those of 1.0).
    operations: ClassVar[frozenset[str]] = frozenset(OPERATIONS_1_0)
    #: Finer-grained abilities, e.g. ``reboot.soft`` and ``reboot.hard``.
    features: ClassVar[frozenset[str]] = frozenset({"reboot.soft", "reboot.hard"})
    #: The tier the driver claims.
    support_tier: ClassVar[SupportTier] = SupportTier.UNTESTED

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        """Register the driver's own configuration options (none by default)."""

    # Host lifecycle -------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Prepare to serve ``host`` (connect, check reachability).

        :raises computed.exception.DriverError: if the host cannot be served.
        """

    def cleanup_host(self, host: str) -> None:
        """Release what :meth:`init_host` acquired; called at shutdown."""

    # Instances -----------------------------------------------------------

    @abc.abstractmethod
    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        """Create and start the instance, or return it if its UUID exists.

        ``spec`` has passed :meth:`InstanceSpec.validate`, so every field is set.
        """

    @abc.abstractmethod
    def destroy(self, host: str, uuid: str) -> None:
        """Stop and delete the instance and its disks; succeed if it is missing."""

    @abc.abstractmethod
    def get_info(self, host: str, uuid: str) -> InstanceInfo:
        """:raises computed.exception.InstanceNotFound: if the instance is missing."""

    @abc.abstractmethod
    def list_instances(self, host: str) -> list[InstanceInfo]:
        """Every instance on the host, in any power state."""

    def reboot(self, host: str, uuid: str, reboot_type: str) -> InstanceInfo:
        return self._unsupported(host, "reboot")

    def power_on(self, host: str, uuid: str) -> InstanceInfo:
        return self._unsupported(host, "power_on")

    def power_off(self, host: str, uuid: str) -> InstanceInfo:
        return self._unsupported(host, "power_off")

    def pause(self, host: str, uuid: str) -> InstanceInfo:
        return self._unsupported(host, "pause")

    def unpause(self, host: str, uuid: str) -> InstanceInfo:
        return self._unsupported(host, "unpause")

    def suspend(self, host: str, uuid: str) -> InstanceInfo:
        return self._unsupported(host, "suspend")

    def resume(self, host: str, uuid: str) -> InstanceInfo:
        return self._unsupported(host, "resume")

    def get_console_output(self, host: str, uuid: str, tail_lines: int | None) -> str:
        """The instance's console log, its last ``tail_lines`` lines if given (contract 1.1).

        :raises computed.exception.InstanceNotFound: if the instance is missing.
        """
        raise exception.UnsupportedOperation(
            operation="get_console_output", driver=self.name, host=host
        )

    # Host ----------------------------------------------------------------

    @abc.abstractmethod
    def get_host_resources(self, host: str) -> HostResources:
        """Capacity and use of the host."""

    def supports(self, operation: str) -> bool:
        return operation in self.operations

    def _unsupported(self, host: str, operation: str) -> InstanceInfo:
        raise exception.UnsupportedOperation(operation=operation, driver=self.name, host=host)


class TransitionDriver(ComputeDriver):
    """A driver whose power-state operations all go through :meth:`transition`.

    Most drivers apply :data:`TRANSITIONS` the same way for every operation:
    look the instance up, ask :func:`plan_transition` whether to act, call the
    backend. Implementing that once in :meth:`transition` gives every
    lifecycle operation below.
    """

    @abc.abstractmethod
    def transition(self, host: str, uuid: str, operation: str) -> InstanceInfo:
        """Apply ``operation`` (a key of :data:`TRANSITIONS`) to the instance."""

    def reboot(self, host: str, uuid: str, reboot_type: str) -> InstanceInfo:
        return self.transition(host, uuid, f"reboot.{reboot_type}")

    def power_on(self, host: str, uuid: str) -> InstanceInfo:
        return self.transition(host, uuid, "power_on")

    def power_off(self, host: str, uuid: str) -> InstanceInfo:
        return self.transition(host, uuid, "power_off")

    def pause(self, host: str, uuid: str) -> InstanceInfo:
        return self.transition(host, uuid, "pause")

    def unpause(self, host: str, uuid: str) -> InstanceInfo:
        return self.transition(host, uuid, "unpause")

    def suspend(self, host: str, uuid: str) -> InstanceInfo:
        return self.transition(host, uuid, "suspend")

    def resume(self, host: str, uuid: str) -> InstanceInfo:
        return self.transition(host, uuid, "resume")
