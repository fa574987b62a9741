"""The contract a hypervisor driver implements.

A driver is a class registered in the ``computed.drivers`` entry-point
namespace. The worker makes one instance and calls it for every host it
serves, always passing the host name, so one driver object may manage
several hypervisors. The worker serializes operations on one instance UUID,
so a driver need not guard against two operations on the same instance at
once, but operations on different instances may run concurrently.

Semantics every driver honours (the fake driver is their executable form):

* Operations are idempotent by instance UUID on a host: spawning a UUID
  that exists on the host returns that instance exactly as it is (its power
  state, shape and devices untouched, whatever the new spec says) without
  making a second one; destroying a missing instance succeeds. Idempotency
  is per host, not global: the same UUID spawned on another host is another
  instance there (a migration's destination is one), and destroying it
  there leaves the first.
* Every operation on an instance of a UUID the host does not have raises
  :class:`~computed.exception.InstanceNotFound` naming the UUID and the
  host, except destroy, which succeeds.
* A host's resources follow its instances: a spawn adds its vCPUs and
  memory to the host's use and its instance count, destroy takes them back.
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
  worker refuses the rest before calling the driver. ``ping`` and
  ``get_capabilities`` (:data:`ALWAYS_SERVED`) are served whatever it says.
* :attr:`ComputeDriver.name` is the driver's entry-point name; the worker
  refuses to start a driver whose class says otherwise.
* Each method returns what it declares (``InstanceInfo`` from every power
  and device operation, ``None`` from ``destroy``...); the worker turns any
  other result into :class:`~computed.exception.DriverError`.
* Devices (contract 1.2): a spawn builds every block device and interface
  of its spec, or fails without leaving the instance behind. Attaching a
  volume is idempotent by (instance, volume id) and an interface by port
  id: attaching what is attached returns the instance as it is, detaching
  what is not attached succeeds. Devices change only while the instance is
  running or stopped (:func:`check_device_state`). A device name, MAC
  address or slot already taken is
  :class:`~computed.exception.DeviceConflict`; extending a volume that is
  not attached is :class:`~computed.exception.DeviceNotFound`. Every
  instance reported lists its block devices and interfaces.
* Images, rescue and consoles (contract 1.3):

  - :meth:`ComputeDriver.snapshot` takes an image of the instance's root
    disk where the backend keeps images and returns its
    :class:`~computed.objects.ImageRef`. It is idempotent by (instance,
    image name): a snapshot named like an image the instance already has
    returns that image without taking another. It runs from
    :data:`SNAPSHOT_STATES` and leaves the instance in the state it found.
    It calls ``progress(percent)`` as it goes (0 to 100, never going back);
    the worker publishes ``instance.snapshot.progress`` from it.
    :meth:`ComputeDriver.delete_image` removes an image the host made;
    a missing one succeeds. An image outlives its instance.
  - :meth:`ComputeDriver.rescue` boots the instance from a rescue image
    (by default the image it was built from) with its own root disk
    attached as a second disk; it is then ``rescued``.
    :meth:`ComputeDriver.unrescue` boots it from its own root disk again,
    ``running``, with every device it had. Both follow :data:`TRANSITIONS`
    (``rescue``, ``unrescue``): rescuing a rescued instance and unrescuing
    a running one are no-ops. A rescued instance reports its own devices,
    not the rescue disk, and takes no operation but ``unrescue``,
    ``destroy`` and the queries; destroying it removes the rescue too.
  - :meth:`ComputeDriver.get_serial_console` and
    :meth:`ComputeDriver.get_graphical_console` say where to reach a
    console of an instance in :data:`CONSOLE_STATES`
    (:class:`~computed.objects.ConsoleConnection`); an instance without
    such a console raises UnsupportedOperation.
* Moving instances (contract 1.4; ``docs/migration.md``): every step gets
  the :class:`~computed.objects.Migration` it belongs to and is idempotent
  by its id: a step run again (after its worker died) finds its work done
  and returns what it returned the first time. The orchestrator calls, on
  the destination, :meth:`ComputeDriver.check_migration_destination` first,
  then either the cold steps (:meth:`~ComputeDriver.migrate_disk_and_power_off`
  on the source, :meth:`~ComputeDriver.finish_migration` on the destination,
  then :meth:`~ComputeDriver.confirm_migration` on the source or
  :meth:`~ComputeDriver.revert_migration` on the destination and
  :meth:`~ComputeDriver.finish_revert_migration` on the source), the live
  ones (:meth:`~ComputeDriver.pre_live_migration` on the destination,
  :meth:`~ComputeDriver.live_migration` on the source,
  :meth:`~ComputeDriver.post_live_migration_at_destination` or
  :meth:`~ComputeDriver.rollback_live_migration_at_destination` on the
  destination) or :meth:`~ComputeDriver.evacuate` on the destination. A
  resize is a cold migration whose source and destination are one host.
  At every moment between steps the instance is on exactly one host as
  far as ``get_info`` and ``list_instances`` say: the source until the
  destination's finishing step returns, the destination after it. The
  source's copy, kept for a revert, is not listed.
"""

from __future__ import annotations

import abc
import enum
import threading
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from oslo_config import cfg

from computed import _logcontext, exception
from computed.objects import (
    ConsoleConnection,
    HostResources,
    ImageRef,
    InstanceInfo,
    InstanceSpec,
    Migration,
    NetworkInterface,
    PowerState,
    VolumeConnection,
    VolumeConnector,
)

__all__ = [
    "ComputeDriver",
    "TransitionDriver",
    "SupportTier",
    "Transition",
    "TRANSITIONS",
    "LIFECYCLE_OPERATIONS",
    "ALL_OPERATIONS",
    "OPERATIONS_1_0",
    "ALWAYS_SERVED",
    "REBOOT_TYPES",
    "FEATURES",
    "DEVICE_OPERATIONS",
    "DEVICE_STATES",
    "SNAPSHOT_STATES",
    "CONSOLE_STATES",
    "IMAGE_OPERATIONS",
    "RESCUE_OPERATIONS",
    "CONSOLE_OPERATIONS",
    "MIGRATION_OPERATIONS",
    "LIVE_MIGRATION_OPERATIONS",
    "EVACUATION_OPERATIONS",
    "COLD_MIGRATION_STATES",
    "LIVE_MIGRATION_STATES",
    "OPERATION_GROUPS",
    "Progress",
    "plan_transition",
    "check_state",
    "check_device_state",
    "operation_thread",
]

#: How a long operation reports how far it is: ``progress(percent)``.
Progress = Callable[[int], None]


def operation_thread(
    target: Callable[..., object], name: str, args: tuple[Any, ...] = ()
) -> threading.Thread:
    """A daemon thread (not started) that works for the operation calling this.

    Its log lines carry the operation's request id, host and instance, as the
    operation's own lines do; a thread made with :class:`threading.Thread`
    logs with none. Start progress watchers and the like with it.
    """
    return threading.Thread(target=_logcontext.carried(target), args=args, name=name, daemon=True)


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
    "rescue": Transition(frozenset({_S.RUNNING, _S.STOPPED}), _S.RESCUED),
    "unrescue": Transition(frozenset({_S.RESCUED}), _S.RUNNING),
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

#: Operations the worker serves for every driver, whatever its
#: :attr:`ComputeDriver.operations` says: they answer from the worker and the
#: driver's class attributes, never from the hypervisor, and are how a client
#: learns what the driver does. Capabilities always list them.
ALWAYS_SERVED = ("get_capabilities", "ping")

#: Operations that change an instance's devices (contract 1.2); as casts
#: their outcome is notified like a lifecycle operation's.
DEVICE_OPERATIONS = (
    "attach_volume",
    "detach_volume",
    "extend_volume",
    "attach_interface",
    "detach_interface",
)

#: Operations of contract 1.3 that make and remove images of instances.
IMAGE_OPERATIONS = ("snapshot", "delete_image")

#: Operations of contract 1.3 that boot an instance from a rescue image and back.
RESCUE_OPERATIONS = ("rescue", "unrescue")

#: Operations of contract 1.3 that say where an instance's consoles are.
CONSOLE_OPERATIONS = ("get_serial_console", "get_graphical_console")

#: Operations of contract 1.4 that resize an instance or move it, stopped, to
#: another host (the destination's check comes first in every move).
MIGRATION_OPERATIONS = (
    "check_migration_destination",
    "migrate_disk_and_power_off",
    "finish_migration",
    "confirm_migration",
    "revert_migration",
    "finish_revert_migration",
)

#: Operations of contract 1.4 that move a running instance to another host.
LIVE_MIGRATION_OPERATIONS = (
    "pre_live_migration",
    "live_migration",
    "post_live_migration_at_destination",
    "rollback_live_migration_at_destination",
    "abort_live_migration",
)

#: Operations of contract 1.4 that rebuild an instance of a dead host elsewhere.
EVACUATION_OPERATIONS = ("evacuate",)

#: Every operation of the contract (see ``computed.version.METHOD_VERSIONS``).
ALL_OPERATIONS = (
    OPERATIONS_1_0
    + ("get_console_output", "get_volume_connector")
    + DEVICE_OPERATIONS
    + IMAGE_OPERATIONS
    + RESCUE_OPERATIONS
    + CONSOLE_OPERATIONS
    + MIGRATION_OPERATIONS
    + LIVE_MIGRATION_OPERATIONS
    + EVACUATION_OPERATIONS
)

#: The operations by group, each rated on its own by the conformance suite:
#: a driver may be conformant for the lifecycle and partial for volumes.
OPERATION_GROUPS: dict[str, tuple[str, ...]] = {
    "lifecycle": LIFECYCLE_OPERATIONS + ("get_info", "list_instances"),
    "host": ("get_host_resources", "get_capabilities", "ping"),
    "console": ("get_console_output",) + CONSOLE_OPERATIONS,
    "volumes": ("get_volume_connector", "attach_volume", "detach_volume", "extend_volume"),
    "interfaces": ("attach_interface", "detach_interface"),
    "images": IMAGE_OPERATIONS,
    "rescue": RESCUE_OPERATIONS,
    "migration": MIGRATION_OPERATIONS,
    "live_migration": ("check_migration_destination",) + LIVE_MIGRATION_OPERATIONS,
    "evacuation": ("check_migration_destination",) + EVACUATION_OPERATIONS,
}

#: Every feature a driver may declare. ``spawn.*`` say which parts of an
#: InstanceSpec 1.2 it builds: blank (ephemeral) disks, volumes, a boot
#: volume, network interfaces. A spawn needing a feature the driver lacks is
#: refused before it reaches the driver.
FEATURES = frozenset(
    {
        "reboot.soft",
        "reboot.hard",
        "spawn.ephemeral_disks",
        "spawn.volumes",
        "spawn.boot_from_volume",
        "spawn.network_interfaces",
    }
)

#: The power states in which an instance's devices may change.
DEVICE_STATES = frozenset({PowerState.RUNNING, PowerState.STOPPED})

#: The power states from which a snapshot may be taken.
SNAPSHOT_STATES = frozenset({PowerState.RUNNING, PowerState.STOPPED, PowerState.PAUSED})

#: The power states in which an instance has a console to reach.
CONSOLE_STATES = frozenset({PowerState.RUNNING, PowerState.PAUSED, PowerState.RESCUED})


#: The power states from which an instance is resized or migrated cold; it
#: ends in the same state on its destination.
COLD_MIGRATION_STATES = frozenset({PowerState.RUNNING, PowerState.STOPPED})

#: The power states from which an instance is migrated live.
LIVE_MIGRATION_STATES = frozenset({PowerState.RUNNING, PowerState.PAUSED})


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


def check_state(operation: str, uuid: str, state: str, allowed: frozenset[str]) -> None:
    """:raises computed.exception.InvalidPowerState: unless ``state`` is in ``allowed``."""
    if state not in allowed:
        raise exception.InvalidPowerState(
            uuid=uuid, operation=operation, state=state, allowed=", ".join(sorted(allowed))
        )


def check_device_state(operation: str, uuid: str, state: str) -> None:
    """:raises computed.exception.InvalidPowerState: unless devices may change in ``state``."""
    check_state(operation, uuid, state, DEVICE_STATES)


class ComputeDriver(abc.ABC):
    """Base class of every driver.

    Subclasses set :attr:`name`, :attr:`version`, :attr:`operations`,
    :attr:`features` and :attr:`support_tier`, and implement the abstract
    methods. Methods for operations left out of :attr:`operations` are never
    called; the defaults raise UnsupportedOperation.
    """

    #: The entry-point name, as reported in the registry and capabilities; it
    #: must equal the name the driver is registered under, or the worker refuses it.
    name: ClassVar[str] = "base"
    #: The driver's own version (its package version, typically).
    version: ClassVar[str] = "0"
    #: The contract operations this driver supports (by default those of 1.0).
    #: The worker refuses the others before calling the driver, except
    #: :data:`ALWAYS_SERVED` (ping, get_capabilities), which it always serves.
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

    # Devices (contract 1.2) ---------------------------------------------------

    def get_volume_connector(self, host: str) -> VolumeConnector:
        """What a storage service needs to export a volume to ``host``."""
        raise exception.UnsupportedOperation(
            operation="get_volume_connector", driver=self.name, host=host
        )

    def attach_volume(
        self, host: str, uuid: str, connection_info: VolumeConnection, mountpoint: str | None
    ) -> InstanceInfo:
        """Attach the volume as ``mountpoint`` (``vdb`` or ``/dev/vdb``), or a name the
        driver picks if None; the instance reports the name used.

        Attaching a volume already attached (same volume id) returns the
        instance unchanged, whatever the mountpoint.

        :raises computed.exception.InstanceNotFound: if the instance is missing.
        :raises computed.exception.InvalidPowerState: outside :data:`DEVICE_STATES`.
        :raises computed.exception.DeviceConflict: if ``mountpoint`` holds another device.
        """
        return self._unsupported(host, "attach_volume")

    def detach_volume(self, host: str, uuid: str, volume_id: str) -> InstanceInfo:
        """Detach the volume; succeed if it is not attached.

        :raises computed.exception.InstanceNotFound: if the instance is missing.
        :raises computed.exception.InvalidPowerState: outside :data:`DEVICE_STATES`.
        """
        return self._unsupported(host, "detach_volume")

    def extend_volume(self, host: str, uuid: str, volume_id: str, new_size: int) -> InstanceInfo:
        """Make the instance see the volume's new size, ``new_size`` GiB.

        The storage service has grown the volume already; the host rescans or
        resizes its view of it. A size not larger than the current one is a
        no-op when equal and InvalidRequest when smaller, where the size is known.

        :raises computed.exception.DeviceNotFound: if the volume is not attached.
        """
        return self._unsupported(host, "extend_volume")

    def attach_interface(self, host: str, uuid: str, vif: NetworkInterface) -> InstanceInfo:
        """Plug the interface; an attached port id returns the instance unchanged.

        :raises computed.exception.DeviceConflict: if its MAC address is taken.
        :raises computed.exception.InvalidRequest: if its network does not exist on the host.
        """
        return self._unsupported(host, "attach_interface")

    def detach_interface(self, host: str, uuid: str, port_id: str) -> InstanceInfo:
        """Unplug the interface; succeed if it is not attached."""
        return self._unsupported(host, "detach_interface")

    # Images, rescue and consoles (1.3) --------------------------------------

    def snapshot(self, host: str, uuid: str, image_name: str, progress: Progress) -> ImageRef:
        """Take an image of the instance's root disk, named ``image_name``.

        Idempotent by (instance, image name): return the image the instance
        already has of that name. Runs from :data:`SNAPSHOT_STATES` (else
        InvalidPowerState) and leaves the instance's power state as it was.
        Call ``progress(percent)`` as the copy advances.
        """
        raise exception.UnsupportedOperation(operation="snapshot", driver=self.name, host=host)

    def delete_image(self, host: str, image_id: str) -> None:
        """Remove an image :meth:`snapshot` made on ``host``; succeed if it is gone."""
        raise exception.UnsupportedOperation(operation="delete_image", driver=self.name, host=host)

    def rescue(self, host: str, uuid: str, rescue_image: str | None) -> InstanceInfo:
        """Boot the instance from ``rescue_image`` (default: its own image) with its
        root disk attached as a second disk (transition ``rescue``)."""
        return self._unsupported(host, "rescue")

    def unrescue(self, host: str, uuid: str) -> InstanceInfo:
        """Boot a rescued instance from its own root disk again (transition ``unrescue``)."""
        return self._unsupported(host, "unrescue")

    def get_serial_console(self, host: str, uuid: str) -> ConsoleConnection:
        """Where to reach the instance's serial console (running, paused or rescued)."""
        raise exception.UnsupportedOperation(
            operation="get_serial_console", driver=self.name, host=host
        )

    def get_graphical_console(self, host: str, uuid: str) -> ConsoleConnection:
        """Where to reach the instance's display: VNC, SPICE or RDP, as the hypervisor offers."""
        raise exception.UnsupportedOperation(
            operation="get_graphical_console", driver=self.name, host=host
        )

    # Moving instances (1.4) -------------------------------------------------
    #
    # Each step is idempotent by migration.id (see the module's docstring).

    def check_migration_destination(self, host: str, migration: Migration) -> dict[str, str]:
        """On the destination: whether ``host`` can take the instance (networks its
        interfaces need, for a live migration a compatible CPU and hypervisor);
        return what the source needs to reach it (``dest_data``), or {}.

        Free resources are the worker's business, checked before this.

        :raises computed.exception.MigrationPreCheckFailed: saying why not.
        """
        raise exception.UnsupportedOperation(
            operation="check_migration_destination", driver=self.name, host=host
        )

    def migrate_disk_and_power_off(
        self, host: str, uuid: str, migration: Migration
    ) -> dict[str, str]:
        """On the source: stop the instance (from :data:`COLD_MIGRATION_STATES`) and
        make its disks available to the destination (``migration.dest_data`` says
        where it is); return what :meth:`finish_migration` needs (``source_data``).

        The instance stays listed on the source, stopped, until the destination
        finishes.
        """
        raise exception.UnsupportedOperation(
            operation="migrate_disk_and_power_off", driver=self.name, host=host
        )

    def finish_migration(self, host: str, migration: Migration) -> InstanceInfo:
        """On the destination: build the instance from what the source handed over, at
        ``migration.flavor``, with its devices, in ``migration.power_state``.

        From here the destination lists it and the source does not; the source
        keeps its copy, unlisted, until :meth:`confirm_migration` or
        :meth:`finish_revert_migration`. On one host (a resize) the instance is
        resized in place, its old size kept for a revert.
        """
        return self._unsupported(host, "finish_migration")

    def confirm_migration(self, host: str, migration: Migration) -> None:
        """On the source: remove the copy kept for a revert; succeed if it is gone."""
        raise exception.UnsupportedOperation(
            operation="confirm_migration", driver=self.name, host=host
        )

    def revert_migration(self, host: str, migration: Migration) -> None:
        """On the destination: remove the instance built by :meth:`finish_migration`;
        succeed if it is gone. On one host (a resize) this does nothing: the
        source's step puts the old size back."""
        raise exception.UnsupportedOperation(
            operation="revert_migration", driver=self.name, host=host
        )

    def finish_revert_migration(self, host: str, migration: Migration) -> InstanceInfo:
        """On the source: bring the instance back as it was before the migration
        (``migration.old_flavor``, ``migration.instance.power_state``), listed again.
        An instance never stopped by :meth:`migrate_disk_and_power_off` is returned as it is."""
        return self._unsupported(host, "finish_revert_migration")

    def pre_live_migration(self, host: str, migration: Migration) -> dict[str, str]:
        """On the destination: prepare to receive the running instance (its disks'
        targets, its networks); return more ``dest_data`` for the source, or {}.
        Undone by :meth:`rollback_live_migration_at_destination`."""
        raise exception.UnsupportedOperation(
            operation="pre_live_migration", driver=self.name, host=host
        )

    def live_migration(
        self, host: str, uuid: str, migration: Migration, progress: Progress
    ) -> None:
        """On the source: move the running instance to ``migration.dest_host`` and
        return once it runs there and no longer on ``host``.

        Call ``progress(percent)`` as memory (and disks) are copied. A
        failure leaves the instance running on the source. Run again after the
        instance has left, it returns at once.

        :raises computed.exception.MigrationAborted: if :meth:`abort_live_migration` stopped it.
        """
        raise exception.UnsupportedOperation(
            operation="live_migration", driver=self.name, host=host
        )

    def post_live_migration_at_destination(self, host: str, migration: Migration) -> InstanceInfo:
        """On the destination: finish taking the instance in; return it as it runs here."""
        return self._unsupported(host, "post_live_migration_at_destination")

    def rollback_live_migration_at_destination(self, host: str, migration: Migration) -> None:
        """On the destination: undo :meth:`pre_live_migration` (and anything a failed
        migration left) after a failure or an abort; succeed if there is nothing."""
        raise exception.UnsupportedOperation(
            operation="rollback_live_migration_at_destination", driver=self.name, host=host
        )

    def abort_live_migration(self, host: str, uuid: str, migration: Migration) -> None:
        """On the source: stop the live migration in progress, if any; the
        instance keeps running on the source. Called while :meth:`live_migration`
        runs (on another thread); succeed if no migration is in progress."""
        raise exception.UnsupportedOperation(
            operation="abort_live_migration", driver=self.name, host=host
        )

    def evacuate(self, host: str, migration: Migration) -> InstanceInfo:
        """On the destination: rebuild the instance of a dead host from
        ``migration.spec`` (from its disks, where the backend shares them with the
        source host, else from its image), in ``migration.power_state``.
        Idempotent by instance UUID, like a spawn."""
        return self._unsupported(host, "evacuate")

    # Host ----------------------------------------------------------------

    @abc.abstractmethod
    def get_host_resources(self, host: str) -> HostResources:
        """Capacity and use of the host."""

    def watch_instances(self, host: str, changed: Callable[[str], None]) -> None:
        """Call ``changed(uuid)`` whenever the hypervisor of ``host`` reports that an
        instance changed by itself (optional; called once per host after
        :meth:`init_host`).

        The worker then looks at that instance and publishes what changed, if
        no operation of its own did it. A driver whose hypervisor has events
        (libvirt's lifecycle events, xapi's ``event.from``) implements this;
        the others rely on the worker's periodic look (``[notifications]
        instance_sync_interval``). ``changed`` is cheap and thread-safe; call
        it from any thread, as often as the hypervisor reports.
        """

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
