"""The RPC endpoint a worker serves for each of its hosts.

Each public method is one operation of the contract. Every message is
checked at this boundary before the driver sees it: its arguments must bind
to the method's signature, carry the right types and pass the payload's own
limits, and the driver must support the operation. Bad input becomes
InvalidRequest for the caller; the worker goes on serving.

The worker serves :func:`endpoints`: the manager, whose target is the
current version, and, for one release after a major bump, a proxy per
previous major that still has callers (nova's ``_ComputeV4Proxy`` pattern).
oslo.messaging routes a message to the endpoint whose target major matches
the message's version, and the proxy forwards to the manager, adapting the
old arguments. ``docs/contract.md`` describes the procedure.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import oslo_messaging as messaging
from oslo_context import context as oslo_context
from oslo_utils import uuidutils

from computed import _logcontext, exception, notifications, version
from computed._claims import HostTracker
from computed._journal import Journal, Ticket, decode_arguments, take_receipt
from computed._locks import KeyedLocks
from computed._returns import check_return, declared_return
from computed.metrics import NOT_MEASURED, OperationMetrics
from computed.notifications import OutcomeNotifier
from computed.objects import (
    ConsoleConnection,
    ConsoleKind,
    DeviceKind,
    HostCapabilities,
    HostResources,
    ImageRef,
    InstanceInfo,
    InstanceInfoList,
    InstanceSpec,
    Migration,
    NetworkInterface,
    PingResult,
    VolumeConnection,
    VolumeConnector,
)
from computed.objects import devices as device_checks
from computed.objects.image import check_image_name
from computed.registry.api import JOURNAL_DONE, JOURNAL_RECEIVED, JournalRecord
from drivers import base

__all__ = [
    "ComputeManager",
    "Operation",
    "operation_of",
    "PREVIOUS_MAJOR_PROXIES",
    "REPEATABLE_OPERATIONS",
    "SOURCE_STEPS",
    "endpoints",
    "reconcile",
    "clean_up_evacuated",
    "sync_instances",
    "tracker_of",
    "watching",
]

#: Lifecycle operations that reach the same end state when run again for the
#: same UUID (a second spawn returns the first VM), so a new owner completes
#: them after a takeover. Any other (reboot) is reported failed instead.
REPEATABLE_OPERATIONS = frozenset(
    {"spawn", "destroy", "power_on", "power_off", "pause", "unpause", "suspend", "resume"}
    | set(base.DEVICE_OPERATIONS)
    | {"snapshot", "rescue", "unrescue"}
    | set(base.MIGRATION_OPERATIONS)
    | set(base.LIVE_MIGRATION_OPERATIONS)
    | set(base.EVACUATION_OPERATIONS)
) - {"check_migration_destination", "abort_live_migration"}

#: Steps of a move that run on its source host; the others run on its destination.
SOURCE_STEPS = frozenset(
    {
        "migrate_disk_and_power_off",
        "confirm_migration",
        "finish_revert_migration",
        "live_migration",
        "abort_live_migration",
    }
)

#: A long operation's progress is published in steps of this many percent.
PROGRESS_STEP = 10

LOG = logging.getLogger(__name__)

#: The state of an instance an operation left unsettled (it failed, or its
#: result does not say): the next look learns it without reporting it.
_UNKNOWN = "unknown"

_F = TypeVar("_F", bound=Callable[..., Any])


class Operation:
    """One operation of the contract: how its arguments are checked, and how it runs.

    The worker's listener checks a message with :meth:`validate` before it
    journals or acknowledges it, then runs it with :meth:`execute`; a
    direct call of the endpoint method does both.
    """

    def __init__(self, func: Callable[..., Any], lifecycle: bool) -> None:
        self.func = func
        self.name = func.__name__
        self.lifecycle = lifecycle
        self._signature = inspect.signature(func)
        params = list(self._signature.parameters.values())[2:]  # after self, ctxt
        self._names = frozenset(p.name for p in params)
        self._required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
        self._defaults = {
            p.name: p.default for p in params if p.default is not inspect.Parameter.empty
        }

    def validate(
        self, manager: ComputeManager, ctxt: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The operation's arguments, bound and checked.

        :raises computed.exception.ComputedError: InvalidRequest or
            UnsupportedOperation, saying what is wrong.
        """
        if not args and kwargs.keys() <= self._names and self._required <= kwargs.keys():
            arguments = {**self._defaults, **kwargs}  # the usual case: keyword arguments
        else:
            try:
                bound = self._signature.bind(manager, ctxt, *args, **kwargs)
            except TypeError as exc:
                raise exception.InvalidRequest(operation=self.name, reason=str(exc)) from None
            bound.apply_defaults()
            arguments = dict(list(bound.arguments.items())[2:])
        manager._check(self.name, arguments)
        return arguments

    def execute(self, manager: ComputeManager, ctxt: Any, arguments: dict[str, Any]) -> Any:
        """Run the operation on checked ``arguments``, measured in the worker's metrics.

        A lifecycle operation that ends well says so at INFO, any other at
        DEBUG; the request, host and instance are in the line's context
        (:mod:`computed._logcontext`), a failure is logged by the caller.
        """
        with manager._metrics.measure(self.name):
            LOG.debug("%s started", self.name)
            if not self.lifecycle:
                result = manager._invoke(self.name, self.func, ctxt, arguments)
            else:
                result = manager._run_lifecycle(self.name, self.func, ctxt, arguments)
        LOG.log(logging.INFO if self.lifecycle else logging.DEBUG, "%s done", self.name)
        return result

    def instance_uuid(self, arguments: dict[str, Any]) -> str | None:
        """The UUID of the instance that checked ``arguments`` act on, if any."""
        return _instance_uuid(arguments)


def operation_of(endpoint: object, method: str) -> Operation | None:
    """The contract operation ``method`` of ``endpoint``, or None if it is not one."""
    if method.startswith("_"):
        return None
    found = getattr(getattr(endpoint, method, None), "operation", None)
    return found if isinstance(found, Operation) else None


def _operation(lifecycle: bool = False) -> Callable[[_F], _F]:
    """Make an endpoint method an :class:`Operation`: checked, locked, notified, mapped."""

    def decorate(func: _F) -> _F:
        operation = Operation(func, lifecycle)

        @functools.wraps(func)
        def wrapper(self: ComputeManager, ctxt: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return operation.execute(self, ctxt, operation.validate(self, ctxt, args, kwargs))
            except exception.ComputedError as exc:
                if exc.expected:
                    LOG.info("%s on %s refused: %s", operation.name, self._host, exc)
                    raise messaging.ExpectedException() from exc
                raise

        wrapper.operation = operation  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


class ComputeManager:
    """Serves the compute contract for one host through one driver."""

    target = messaging.Target(version=version.RPC_API_VERSION)

    def __init__(
        self,
        host: str,
        driver: base.ComputeDriver,
        worker_id: str,
        notifier: OutcomeNotifier,
        journal: Journal | None = None,
        metrics: OperationMetrics = NOT_MEASURED,
        tracker: HostTracker | None = None,
    ) -> None:
        """
        :param tracker: the host's resources, claims and disabled flag
            (:mod:`computed._claims`); by default one with the default
            allocation ratios that nothing records in the registry.
        """
        self._host = host
        self._driver = driver
        self._worker_id = worker_id
        self._notifier = notifier
        self._journal = journal
        self._metrics = metrics
        self._locks = KeyedLocks()
        #: The power state of each instance as this worker last saw it settle,
        #: by its own operations or by a look at the hypervisor, against which
        #: changes nobody asked for are found (:func:`sync_instances`).
        self._states: dict[str, str] = {}
        #: Whether a look at the host's instances has been taken.
        self._looked = False
        #: While a look reads the hypervisor: what operations settled meanwhile.
        self._settled_meanwhile: dict[str, str | None] | None = None
        self._states_lock = threading.Lock()
        self._tracker = tracker or HostTracker(host, driver)

    # Instance lifecycle ------------------------------------------------------

    @_operation(lifecycle=True)
    def spawn(self, ctxt: Any, instance: InstanceSpec) -> InstanceInfo:
        with self._tracker.admit(
            instance.vcpus, instance.memory_mb, instance.disk_gb, instance.uuid
        ):
            return self._driver.spawn(self._host, instance)

    @_operation(lifecycle=True)
    def destroy(self, ctxt: Any, uuid: str) -> None:
        try:
            self._driver.destroy(self._host, uuid)
        finally:
            self._resources_changed()

    @_operation(lifecycle=True)
    def reboot(self, ctxt: Any, uuid: str, reboot_type: str = "soft") -> InstanceInfo:
        return self._driver.reboot(self._host, uuid, reboot_type)

    @_operation(lifecycle=True)
    def power_on(self, ctxt: Any, uuid: str) -> InstanceInfo:
        return self._driver.power_on(self._host, uuid)

    @_operation(lifecycle=True)
    def power_off(self, ctxt: Any, uuid: str) -> InstanceInfo:
        return self._driver.power_off(self._host, uuid)

    @_operation(lifecycle=True)
    def pause(self, ctxt: Any, uuid: str) -> InstanceInfo:
        return self._driver.pause(self._host, uuid)

    @_operation(lifecycle=True)
    def unpause(self, ctxt: Any, uuid: str) -> InstanceInfo:
        return self._driver.unpause(self._host, uuid)

    @_operation(lifecycle=True)
    def suspend(self, ctxt: Any, uuid: str) -> InstanceInfo:
        return self._driver.suspend(self._host, uuid)

    @_operation(lifecycle=True)
    def resume(self, ctxt: Any, uuid: str) -> InstanceInfo:
        return self._driver.resume(self._host, uuid)

    # Devices (1.2) ------------------------------------------------------------

    @_operation(lifecycle=True)
    def attach_volume(
        self,
        ctxt: Any,
        uuid: str,
        connection_info: VolumeConnection,
        mountpoint: str | None = None,
    ) -> InstanceInfo:
        return self._driver.attach_volume(self._host, uuid, connection_info, mountpoint)

    @_operation(lifecycle=True)
    def detach_volume(self, ctxt: Any, uuid: str, volume_id: str) -> InstanceInfo:
        return self._driver.detach_volume(self._host, uuid, volume_id)

    @_operation(lifecycle=True)
    def extend_volume(self, ctxt: Any, uuid: str, volume_id: str, new_size: int) -> InstanceInfo:
        return self._driver.extend_volume(self._host, uuid, volume_id, new_size)

    @_operation(lifecycle=True)
    def attach_interface(self, ctxt: Any, uuid: str, vif: NetworkInterface) -> InstanceInfo:
        return self._driver.attach_interface(self._host, uuid, vif)

    @_operation(lifecycle=True)
    def detach_interface(self, ctxt: Any, uuid: str, port_id: str) -> InstanceInfo:
        return self._driver.detach_interface(self._host, uuid, port_id)

    # Images, rescue and consoles (1.3) ------------------------------------------

    @_operation(lifecycle=True)
    def snapshot(self, ctxt: Any, uuid: str, image_name: str) -> ImageRef:
        progress = _ProgressReport(self._notifier, ctxt, self._host, "snapshot", uuid)
        image = self._driver.snapshot(self._host, uuid, image_name, progress)
        progress(100)
        return image

    @_operation()
    def delete_image(self, ctxt: Any, image_id: str) -> None:
        self._driver.delete_image(self._host, image_id)

    @_operation(lifecycle=True)
    def rescue(self, ctxt: Any, uuid: str, rescue_image: str | None = None) -> InstanceInfo:
        return self._driver.rescue(self._host, uuid, rescue_image)

    @_operation(lifecycle=True)
    def unrescue(self, ctxt: Any, uuid: str) -> InstanceInfo:
        return self._driver.unrescue(self._host, uuid)

    @_operation()
    def get_serial_console(self, ctxt: Any, uuid: str) -> ConsoleConnection:
        return _console(
            "get_serial_console",
            ConsoleKind.SERIAL,
            self._driver.get_serial_console(self._host, uuid),
        )

    @_operation()
    def get_graphical_console(self, ctxt: Any, uuid: str) -> ConsoleConnection:
        return _console(
            "get_graphical_console",
            ConsoleKind.GRAPHICAL,
            self._driver.get_graphical_console(self._host, uuid),
        )

    # Moving instances (1.4) -----------------------------------------------------
    #
    # Each step gets the whole Migration and acts on its own side of it; all
    # but the check and the abort are journaled and repeatable (idempotent by
    # migration id). docs/migration.md describes the orchestration.

    @_operation()
    def check_migration_destination(self, ctxt: Any, migration: Migration) -> dict[str, str]:
        if not migration.same_host:
            self._check_host_enabled()  # a resize brings nothing new to its host
        with self._admit_move(migration, "check_migration_destination"):
            pass  # room now; the step that builds the instance here claims it
        return _data(
            "check_migration_destination",
            self._driver.check_migration_destination(self._host, migration),
        )

    @_operation(lifecycle=True)
    def migrate_disk_and_power_off(self, ctxt: Any, migration: Migration) -> dict[str, str]:
        return _data(
            "migrate_disk_and_power_off",
            self._driver.migrate_disk_and_power_off(self._host, migration.instance_uuid, migration),
        )

    @_operation(lifecycle=True)
    def finish_migration(self, ctxt: Any, migration: Migration) -> InstanceInfo:
        with self._admit_move(migration, "finish_migration"):
            return self._driver.finish_migration(self._host, migration)

    @_operation(lifecycle=True)
    def confirm_migration(self, ctxt: Any, migration: Migration) -> None:
        try:
            self._driver.confirm_migration(self._host, migration)
        finally:
            self._resources_changed()

    @_operation(lifecycle=True)
    def revert_migration(self, ctxt: Any, migration: Migration) -> None:
        try:
            self._driver.revert_migration(self._host, migration)
        finally:
            self._resources_changed()

    @_operation(lifecycle=True)
    def finish_revert_migration(self, ctxt: Any, migration: Migration) -> InstanceInfo:
        try:
            return self._driver.finish_revert_migration(self._host, migration)
        finally:
            self._resources_changed()

    @_operation(lifecycle=True)
    def pre_live_migration(self, ctxt: Any, migration: Migration) -> dict[str, str]:
        with self._admit_move(migration, "pre_live_migration"):
            prepared = self._driver.pre_live_migration(self._host, migration)
        return _data("pre_live_migration", prepared)

    @_operation(lifecycle=True)
    def live_migration(self, ctxt: Any, migration: Migration) -> None:
        uuid = migration.instance_uuid
        progress = _ProgressReport(self._notifier, ctxt, self._host, "live_migration", uuid)
        try:
            self._driver.live_migration(self._host, uuid, migration, progress)
        finally:
            self._resources_changed()
        progress(100)

    @_operation(lifecycle=True)
    def post_live_migration_at_destination(self, ctxt: Any, migration: Migration) -> InstanceInfo:
        try:
            return self._driver.post_live_migration_at_destination(self._host, migration)
        finally:
            self._resources_changed()

    @_operation(lifecycle=True)
    def rollback_live_migration_at_destination(self, ctxt: Any, migration: Migration) -> None:
        self._driver.rollback_live_migration_at_destination(self._host, migration)

    @_operation()
    def abort_live_migration(self, ctxt: Any, migration: Migration) -> None:
        # Not under the instance's lock: the live migration it stops holds it.
        self._driver.abort_live_migration(self._host, migration.instance_uuid, migration)

    @_operation(lifecycle=True)
    def evacuate(self, ctxt: Any, migration: Migration) -> InstanceInfo:
        self._check_host_enabled()
        with self._admit_move(migration, "evacuate"):
            return self._driver.evacuate(self._host, migration)

    def _admit_move(
        self, migration: Migration, operation: str
    ) -> contextlib.AbstractContextManager[None]:
        """Claim, around a step that brings the instance (or its growth) here, what it needs.

        A resize claims what it adds; any other move its whole size. A step
        run again after the instance arrived (repeated after a takeover) is
        admitted without a claim, as a repeated spawn is: it makes nothing.

        :raises computed.exception.InsufficientResources: the host has no room.
        """
        old, new = migration.old_flavor, migration.flavor
        if migration.same_host:
            vcpus, memory_mb = max(0, new.vcpus - old.vcpus), max(0, new.memory_mb - old.memory_mb)
            disk_gb = max(0, new.disk_gb - old.disk_gb)
        else:
            vcpus, memory_mb, disk_gb = new.vcpus, new.memory_mb, new.disk_gb
        return self._tracker.admit(
            vcpus,
            memory_mb,
            disk_gb,
            migration.instance_uuid,
            operation,
            check_enabled=False,  # each step says whether a disabled host refuses it
            arrived=functools.partial(_at_size, migration),
        )

    # Queries ------------------------------------------------------------------

    @_operation()
    def get_volume_connector(self, ctxt: Any) -> VolumeConnector:
        return self._driver.get_volume_connector(self._host)

    @_operation()
    def get_info(self, ctxt: Any, uuid: str) -> InstanceInfo:
        return self._driver.get_info(self._host, uuid)

    @_operation()
    def list_instances(self, ctxt: Any) -> InstanceInfoList:
        return InstanceInfoList(objects=self._driver.list_instances(self._host))

    @_operation()
    def get_host_resources(self, ctxt: Any) -> HostResources:
        return self._driver.get_host_resources(self._host)

    @_operation()
    def get_console_output(self, ctxt: Any, uuid: str, tail_lines: int | None = None) -> str:
        return self._driver.get_console_output(self._host, uuid, tail_lines)

    @_operation()
    def get_capabilities(self, ctxt: Any) -> HostCapabilities:
        driver = self._driver
        return HostCapabilities(
            host=self._host,
            driver=driver.name,
            driver_version=driver.version,
            support_tier=driver.support_tier.value,
            operations=sorted(driver.operations | set(base.ALWAYS_SERVED)),
            features=sorted(driver.features),
        )

    @_operation()
    def ping(self, ctxt: Any) -> PingResult:
        return PingResult(
            host=self._host,
            worker_id=self._worker_id,
            driver=self._driver.name,
            rpc_version=version.RPC_API_VERSION,
        )

    # What operations that place or remove instances use -------------------------

    def _claim(
        self, vcpus: int = 0, memory_mb: int = 0, disk_gb: int = 0, operation: str = "spawn"
    ) -> contextlib.AbstractContextManager[None]:
        """Claim resources of this host around a driver call::

            with self._claim(vcpus=2, memory_mb=2048, disk_gb=20, operation="resize"):
                self._driver.<the call that makes or grows the instance>

        See :meth:`computed._claims.HostTracker.claim`: concurrent claims on the
        host never together exceed its free resources under the allocation ratios;
        the claim holds until the host is measured after the block ends.

        :raises computed.exception.InsufficientResources: on entry, naming the
            resource short, requested, free, total and ratio.
        """
        return self._tracker.claim(vcpus, memory_mb, disk_gb, operation)

    def _check_host_enabled(self) -> None:
        """Refuse what would bring a new instance to a host an operator disabled.

        The worker reads the flag from the registry at every heartbeat: a
        host disabled takes no new instance from the next one on.

        :raises computed.exception.HostDisabled: naming the host and the reason.
        """
        self._tracker.check_enabled()

    def _resources_changed(self) -> None:
        """Say this host's resources changed (an instance made, removed or resized):
        the worker measures it and records it in the inventory at once, off this thread."""
        self._tracker.changed()

    # --------------------------------------------------------------------------

    def _check(self, operation: str, arguments: dict[str, Any]) -> None:
        """Validate arguments and support before anything reaches the driver."""
        if operation not in base.ALWAYS_SERVED and not self._driver.supports(operation):
            raise exception.UnsupportedOperation(
                operation=operation, driver=self._driver.name, host=self._host
            )
        uuid = arguments.get("uuid")
        if "uuid" in arguments and not (isinstance(uuid, str) and uuidutils.is_uuid_like(uuid)):
            raise exception.InvalidRequest(
                operation=operation, reason=f"uuid must be a UUID string, got {_brief(uuid)}"
            )
        if "instance" in arguments:
            instance = arguments["instance"]
            if not isinstance(instance, InstanceSpec):
                raise exception.InvalidRequest(
                    operation=operation,
                    reason=f"instance must be an InstanceSpec object, got {_brief(instance)}",
                )
            instance.validate()
            self._check_spawn_features(instance)
        self._check_devices(operation, arguments)
        if "reboot_type" in arguments:
            reboot_type = arguments["reboot_type"]
            if reboot_type not in base.REBOOT_TYPES:
                raise exception.InvalidRequest(
                    operation=operation,
                    reason=f"reboot_type must be one of {', '.join(base.REBOOT_TYPES)}, "
                    f"got {_brief(reboot_type)}",
                )
            if f"reboot.{reboot_type}" not in self._driver.features:
                raise exception.UnsupportedOperation(
                    operation=f"reboot.{reboot_type}", driver=self._driver.name, host=self._host
                )
        if "migration" in arguments:
            self._check_migration(operation, arguments["migration"])
        if "image_name" in arguments:
            check_image_name(operation, arguments["image_name"])
        for name in ("image_id", "rescue_image"):
            if arguments.get(name) is not None:
                device_checks.check_id(operation, name, arguments[name])
        tail_lines = arguments.get("tail_lines")
        if tail_lines is not None and not (
            isinstance(tail_lines, int) and not isinstance(tail_lines, bool) and tail_lines >= 0
        ):
            raise exception.InvalidRequest(
                operation=operation,
                reason=f"tail_lines must be a non-negative integer or None, got {_brief(tail_lines)}",
            )

    def _check_devices(self, operation: str, arguments: dict[str, Any]) -> None:
        """Check the arguments of the device operations (contract 1.2)."""
        for name, cls in (("connection_info", VolumeConnection), ("vif", NetworkInterface)):
            if name in arguments:
                value = arguments[name]
                if not isinstance(value, cls):
                    raise exception.InvalidRequest(
                        operation=operation,
                        reason=f"{name} must be a {cls.__name__} object, got {_brief(value)}",
                    )
                value.validate(operation)
        mountpoint = arguments.get("mountpoint")
        if mountpoint is not None:
            device_checks.check_device_name(operation, mountpoint)
        for name in ("volume_id", "port_id"):
            if name in arguments:
                device_checks.check_id(operation, name, arguments[name])
        if "new_size" in arguments:
            size = arguments["new_size"]
            if not (
                isinstance(size, int)
                and not isinstance(size, bool)
                and 1 <= size <= device_checks.MAX_VOLUME_GB
            ):
                raise exception.InvalidRequest(
                    operation=operation,
                    reason=f"new_size must be 1 to {device_checks.MAX_VOLUME_GB} GiB, "
                    f"got {_brief(size)}",
                )

    def _check_migration(self, operation: str, migration: Any) -> None:
        """A step of a move must be of a valid Migration, and sent to its own side of it."""
        if not isinstance(migration, Migration):
            raise exception.InvalidRequest(
                operation=operation,
                reason=f"migration must be a Migration object, got {_brief(migration)}",
            )
        migration.validate(operation)
        side = "source_host" if operation in SOURCE_STEPS else "dest_host"
        if getattr(migration, side) != self._host:
            raise exception.InvalidRequest(
                operation=operation,
                reason=f"{operation} runs on the {side.split('_')[0]} of "
                f"{migration.describe()}, not on {self._host}",
            )

    def _check_spawn_features(self, spec: InstanceSpec) -> None:
        """Refuse a spawn whose devices the driver does not build, before it runs."""
        needed = set()
        for device in spec.extra_devices():
            if device.kind == DeviceKind.BLANK:
                needed.add("spawn.ephemeral_disks")
            elif device.kind == DeviceKind.VOLUME:
                needed.add("spawn.boot_from_volume" if device.boot_index == 0 else "spawn.volumes")
        if spec.network_interfaces:
            needed.add("spawn.network_interfaces")
        for feature in sorted(needed - self._driver.features):
            raise exception.UnsupportedOperation(
                operation=feature, driver=self._driver.name, host=self._host
            )

    def _run_lifecycle(
        self, operation: str, func: Callable[..., Any], ctxt: Any, arguments: dict[str, Any]
    ) -> Any:
        uuid = _instance_uuid(arguments)
        assert uuid is not None
        with self._locks.hold(uuid):
            if self._journal is not None:
                ticket = self._journal.begin(
                    self._host,
                    operation,
                    uuid,
                    _context_dict(ctxt),
                    arguments,
                    repeatable=operation in REPEATABLE_OPERATIONS,
                )
            else:
                ticket = take_receipt() or Ticket(None, None)
            self._notifier.emit(
                ctxt, self._host, operation, "start", uuid, message_id=ticket.message_id
            )
            return self._complete(operation, func, ctxt, arguments, uuid, ticket)

    def _complete(
        self,
        operation: str,
        func: Callable[..., Any],
        ctxt: Any,
        arguments: dict[str, Any],
        uuid: str,
        ticket: Ticket,
    ) -> Any:
        """Run a journaled operation to its outcome notification, then finish its entry.

        The outcome of an operation that must not run twice is journaled
        (``done``) before it is published: a worker that dies in between
        leaves it for the next owner to publish, and the operation never
        runs again once the driver has returned.
        """
        try:
            result = self._invoke(operation, func, ctxt, arguments)
        except Exception as exc:
            self._note_state(uuid, _UNKNOWN)
            self._settle(ctxt, operation, uuid, ticket, notifications.outcome("error", error=exc))
            raise
        info = result if isinstance(result, InstanceInfo) else None
        if info is not None:
            self._note_state(uuid, info.power_state)
        else:
            self._note_state(uuid, None if operation == "destroy" else _UNKNOWN)
        image = result if isinstance(result, ImageRef) else None
        recorded = notifications.outcome("end", info=info, image=image)
        self._settle(ctxt, operation, uuid, ticket, recorded)
        return result

    def _settle(
        self, ctxt: Any, operation: str, uuid: str, ticket: Ticket, recorded: dict[str, Any]
    ) -> None:
        journal = self._journal
        if journal is not None and operation not in REPEATABLE_OPERATIONS:
            # Not to run again, nor to be reported interrupted, after a
            # takeover. A repeatable one is simply completed by the new
            # owner: one commit fewer per operation.
            journal.done(ticket.entry, recorded)
        self._notifier.emit_outcome(
            ctxt, self._host, operation, uuid, recorded, message_id=ticket.message_id
        )
        if journal is not None:
            journal.finish(ticket.entry)

    # Changes nobody asked for ----------------------------------------------------

    def _watching(self) -> bool:
        with self._states_lock:
            return self._looked

    def _sync_instances(self, only: str | None, source: str) -> int:
        """See :func:`sync_instances`."""
        if only is not None:
            return int(self._confirm(only, source))
        with self._states_lock:
            self._settled_meanwhile = {}
        try:
            seen = {i.uuid: str(i.power_state) for i in self._driver.list_instances(self._host)}
        finally:
            with self._states_lock:
                meanwhile, self._settled_meanwhile = self._settled_meanwhile or {}, None
        for uuid, state in meanwhile.items():
            if state is None:
                seen.pop(uuid, None)
            else:
                seen[uuid] = state
        with self._states_lock:
            for uuid, state in seen.items():
                if state != _UNKNOWN:
                    # New to this worker: learnt. One an operation settled
                    # after the read above keeps what the operation left.
                    self._states.setdefault(uuid, state)
            known = dict(self._states)
            self._looked = True
        changed = [u for u in set(known) | set(seen) if known.get(u) != seen.get(u)]
        return sum(self._confirm(uuid, source) for uuid in changed)

    def _confirm(self, uuid: str, source: str) -> bool:
        """Check one instance under its lock; publish a change. True if one was published."""
        with self._locks.try_hold(uuid) as held:
            if not held:
                return False  # an operation is on it: its outcome will say
            try:
                state: str | None = str(self._driver.get_info(self._host, uuid).power_state)
            except exception.InstanceNotFound:
                state = None
            with self._states_lock:
                old = self._states.get(uuid, _UNKNOWN)
                if state is None:
                    self._states.pop(uuid, None)
                else:
                    self._states[uuid] = state
        if old == _UNKNOWN or old == state:
            return False  # new to this worker, or unsettled: learnt, not reported
        LOG.info("Instance %s on %s went from %s to %s by itself", uuid, self._host, old, state)
        self._notifier.emit_state(self._host, uuid, old, state, source)
        return True

    def _note_state(self, uuid: str, state: str | None) -> None:
        """Record the state an operation left the instance in (None: gone)."""
        with self._states_lock:
            if self._settled_meanwhile is not None:
                self._settled_meanwhile[uuid] = state
            if state is None:
                self._states.pop(uuid, None)
            else:
                self._states[uuid] = state

    def _invoke(
        self, operation: str, func: Callable[..., Any], ctxt: Any, arguments: dict[str, Any]
    ) -> Any:
        """Run the operation; anything but the project's errors becomes DriverError,
        and so does a result that is not of the operation's declared type."""
        try:
            result = func(self, ctxt, **arguments)
        except exception.ComputedError:
            raise
        except Exception as exc:
            LOG.exception("Driver %s failed in %s on %s", self._driver.name, operation, self._host)
            raise exception.DriverError(
                driver=self._driver.name,
                host=self._host,
                reason=f"{operation}: {type(exc).__name__}: {exc}",
            ) from exc
        return check_return(self._driver.name, self._host, operation, result, declared_return(func))


#: Endpoint classes serving a previous major for one release after a major
#: bump, each constructed with the current :class:`ComputeManager`. Empty
#: while the contract is at its first major.
PREVIOUS_MAJOR_PROXIES: tuple[Callable[[ComputeManager], object], ...] = ()


def reconcile(manager: ComputeManager, entry: JournalRecord) -> str:
    """Settle an operation a stopped worker left in the journal of ``manager``'s host.

    Not a method: every public method of the manager is an RPC endpoint.

    One whose driver call had returned (``done``) is not repeated: its
    recorded outcome is published, which the stopped worker may have done
    already (its outcome is then reported twice, identically); a message
    still in its receipt state is run now, with a start notification (a
    repeatable one keeps that state once started, so its start may be
    reported twice); a repeatable one is run again (idempotent by UUID) and
    reports its outcome under the original request id; any other is
    reported as an ``instance.<op>.error`` notification (OperationInterrupted).

    :returns: ``finished``, ``completed``, ``failed`` or ``adopted-elsewhere``.
    """
    ctxt = _logcontext.detached(entry.context)
    with _logcontext.serving(ctxt, manager._host, entry.instance_uuid):
        return _settle_entry(manager, entry, ctxt)


def _settle_entry(manager: ComputeManager, entry: JournalRecord, ctxt: Any) -> str:
    """See :func:`reconcile`."""
    journal = manager._journal
    assert journal is not None
    if not journal.adopt(entry):
        return "adopted-elsewhere"
    uuid, operation = entry.instance_uuid, entry.operation
    LOG.info("Settling %s, left %s by worker %s", operation, entry.state, entry.worker_id)
    ticket = Ticket(entry.id, entry.message_id)
    with manager._locks.hold(uuid):
        if entry.state == JOURNAL_DONE:
            # The driver returned; its outcome may not have been published.
            if entry.outcome is not None:
                manager._notifier.emit_outcome(
                    ctxt, manager._host, operation, uuid, entry.outcome, entry.message_id
                )
            journal.finish(entry.id)
            return "finished"
        never_started = entry.state == JOURNAL_RECEIVED
        if operation not in REPEATABLE_OPERATIONS and not never_started:
            error = exception.OperationInterrupted(
                operation=operation,
                uuid=uuid,
                host=manager._host,
                worker=entry.worker_id,
                reason="it is not safe to run twice; check the instance and retry",
            )
            return _fail(manager, ctxt, entry, error)
        func = getattr(ComputeManager, operation).__wrapped__
        try:
            arguments = decode_arguments(entry.arguments, journal.sealer)
            manager._check(operation, arguments)
        except Exception as exc:
            return _fail(manager, ctxt, entry, exc)
        if never_started:
            manager._notifier.emit(
                ctxt, manager._host, operation, "start", uuid, message_id=entry.message_id
            )
        try:
            manager._complete(operation, func, ctxt, arguments, uuid, ticket)
        except Exception:
            return "failed"
        return "completed"


def _fail(manager: ComputeManager, ctxt: Any, entry: JournalRecord, error: Exception) -> str:
    """Report a journaled operation failed, under its request, and finish its entry."""
    manager._notifier.emit(
        ctxt,
        manager._host,
        entry.operation,
        "error",
        entry.instance_uuid,
        error=error,
        message_id=entry.message_id,
    )
    assert manager._journal is not None
    manager._journal.finish(entry.id)
    return "failed"


def clean_up_evacuated(manager: ComputeManager, migration: Migration) -> bool:
    """Remove from ``manager``'s host an instance evacuated from it while it was down.

    Not a method: every public method of the manager is an RPC endpoint.

    The worker that next serves an evacuated instance's old host calls this
    for each completed evacuation from it, as nova's compute does on start:
    the instance runs on the evacuation's destination, and must not on two
    hosts. Only an instance the host still lists is destroyed.

    :returns: whether the instance was there and is gone now.
    """
    uuid = migration.instance_uuid
    with manager._locks.hold(uuid):
        listed = {info.uuid for info in manager._driver.list_instances(manager._host)}
        if uuid not in listed:
            return False
        LOG.info(
            "Destroying instance %s on %s: it was evacuated to %s (migration %s)",
            uuid,
            manager._host,
            migration.dest_host,
            migration.id,
        )
        manager._driver.destroy(manager._host, uuid)
        manager._note_state(uuid, None)
        return True


def sync_instances(manager: ComputeManager, only: str | None = None, source: str = "poll") -> int:
    """Publish what changed on ``manager``'s host since the last look that no
    operation of this worker made: ``instance.power_state.update`` (old and
    new state) and ``instance.delete``.

    Not a method: every public method of the manager is an RPC endpoint.

    What this worker's operations left is known from the moment they settle;
    an instance a look finds that no operation of this worker has touched
    (one that was there before the worker took the host) is learnt, not
    reported. An instance an operation is working on is left for the next
    look; a difference is confirmed under the instance's lock, so an
    operation that ended meanwhile is never taken for a change on the
    hypervisor.

    :param only: look at this instance only (the driver reported an event for it).
    :param source: ``poll`` or ``hypervisor``, as the payload will say.
    :returns: how many changes were published.
    """
    return manager._sync_instances(only, source)


def tracker_of(manager: ComputeManager) -> HostTracker:
    """The resources, claims and disabled flag of ``manager``'s host."""
    return manager._tracker


def watching(manager: ComputeManager) -> bool:
    """Whether a first look at ``manager``'s host's instances has been taken."""
    return manager._watching()


def endpoints(manager: ComputeManager) -> list[object]:
    """The RPC endpoints a worker serves for one host: the manager and its proxies."""
    return [manager, *(proxy(manager) for proxy in PREVIOUS_MAJOR_PROXIES)]


class _ProgressReport:
    """The ``progress`` callback a long operation's driver call gets.

    Publishes ``instance.<operation>.progress`` each time the operation
    passes another :data:`PROGRESS_STEP` percent; a driver may call it as
    often as it likes, from any thread.
    """

    def __init__(
        self, notifier: OutcomeNotifier, ctxt: Any, host: str, operation: str, uuid: str
    ) -> None:
        self._notifier = notifier
        self._ctxt, self._host, self._operation, self._uuid = ctxt, host, operation, uuid
        self._published = -PROGRESS_STEP
        self._lock = threading.Lock()

    def __call__(self, percent: int) -> None:
        percent = max(0, min(100, int(percent)))
        with self._lock:
            step = percent - percent % PROGRESS_STEP
            if step <= self._published:
                return
            self._published = step
        self._notifier.emit_progress(self._ctxt, self._host, self._operation, self._uuid, percent)


def _instance_uuid(arguments: dict[str, Any]) -> str | None:
    """The UUID of the instance that checked ``arguments`` act on, if any."""
    if "instance" in arguments:
        return str(arguments["instance"].uuid)
    if "migration" in arguments:
        return str(arguments["migration"].instance_uuid)
    uuid = arguments.get("uuid")
    return uuid if isinstance(uuid, str) else None


def _at_size(migration: Migration, info: InstanceInfo) -> bool:
    """Whether the instance found here is where ``migration`` brings it: any copy
    for a move between hosts, the new size for a resize."""
    if not migration.same_host:
        return True
    flavor = migration.flavor
    return bool(
        (info.vcpus, info.memory_mb, info.disk_gb)
        == (flavor.vcpus, flavor.memory_mb, flavor.disk_gb)
    )


def _data(operation: str, data: Any) -> dict[str, str]:
    """A step's hand-over data, checked: strings only, as the Migration carries it."""
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise TypeError(f"{operation} returned {_brief(data)}, not a dict of strings")
    return data


def _console(operation: str, kind: str, console: Any) -> ConsoleConnection:
    """The driver's console, checked: a console a proxy could not use is the driver's error.

    Anything but a ConsoleConnection is passed on, for the worker's check of
    every result to refuse.
    """
    if isinstance(console, ConsoleConnection):
        if console.kind != kind:
            raise ValueError(f"{operation} returned a {console.kind} console")
        console.validate(operation)
    return console  # type: ignore[no-any-return]


def _context_dict(ctxt: Any) -> dict[str, Any]:
    if isinstance(ctxt, oslo_context.RequestContext):
        return dict(ctxt.to_dict())
    return dict(ctxt or {})


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
