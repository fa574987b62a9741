"""Moving an instance: to a new size, to another host, or off a dead host (contract 1.4).

One :class:`Migration` describes one move from start to end. The
orchestrator (``rpcapi``) makes it, sends it to each step on the source or
destination host, and keeps it in the registry with its status; each step
returns what the next needs (``source_data`` from the source, ``dest_data``
from the destination), which the orchestrator merges in before sending the
next step. Every step is idempotent by the migration's id, so a step cut
short by a worker's death is simply run again.
"""

from __future__ import annotations

from oslo_versionedobjects import fields

from computed import exception
from computed.objects.base import ComputedObject, ComputedObjectRegistry
from computed.objects.fields import PowerStateField
from computed.objects.instance import MAX_DISK_GB, MAX_MEMORY_MB, MAX_VCPUS

__all__ = ["Flavor", "Migration", "MigrationKind", "MigrationStatus", "MAX_DATA_ITEMS"]

#: A step's data (``source_data``, ``dest_data``) holds at most this many items.
MAX_DATA_ITEMS = 64
MAX_DATA_LENGTH = 4096


class MigrationKind(fields.Enum):
    """``resize``: a new size on the same host; ``cold``: stopped, to another host;
    ``live``: running, to another host; ``evacuation``: rebuilt on another host
    while its own host is down."""

    RESIZE = "resize"
    COLD = "cold"
    LIVE = "live"
    EVACUATION = "evacuation"

    ALL = (RESIZE, COLD, LIVE, EVACUATION)

    def __init__(self) -> None:
        super().__init__(valid_values=MigrationKind.ALL)


class MigrationKindField(fields.BaseEnumField):
    AUTO_TYPE = MigrationKind()


class MigrationStatus:
    """Where a migration stands, as the registry records it.

    A cold migration or resize goes ``accepted`` → ``pre-migrating`` (the
    destination agreed) → ``migrating`` (the source stopped the instance and
    handed its disks over) → ``post-migrating`` → ``finished`` (running or
    stopped on the destination, as before; the source keeps its copy) →
    ``confirmed`` (the source copy is gone) or ``reverting`` → ``reverted``
    (back on the source as it was, the destination copy gone).

    A live migration goes ``accepted`` → ``pre-migrating`` → ``preparing``
    (the destination is ready) → ``running`` → ``post-migrating`` →
    ``completed``; or, from ``running``, ``aborting`` → ``aborted``.

    An evacuation goes ``accepted`` → ``pre-migrating`` → ``rebuilding`` →
    ``completed``; the worker that next serves the source host removes the
    instance there and marks it ``cleaned``.

    ``error``: the move failed; the instance was left where it was before
    (the error says so, or says what to check).
    """

    ACCEPTED = "accepted"
    PRE_MIGRATING = "pre-migrating"
    MIGRATING = "migrating"
    PREPARING = "preparing"
    RUNNING = "running"
    REBUILDING = "rebuilding"
    POST_MIGRATING = "post-migrating"
    FINISHED = "finished"
    CONFIRMED = "confirmed"
    REVERTING = "reverting"
    REVERTED = "reverted"
    COMPLETED = "completed"
    ABORTING = "aborting"
    ABORTED = "aborted"
    CLEANED = "cleaned"
    ERROR = "error"

    #: A migration in one of these is over: nothing moves it further.
    FINAL = frozenset({CONFIRMED, REVERTED, COMPLETED, ABORTED, CLEANED, ERROR})


@ComputedObjectRegistry.register
class Flavor(ComputedObject):
    """The size of an instance: what a resize changes and a migration keeps.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "vcpus": fields.IntegerField(),
        "memory_mb": fields.IntegerField(),
        "disk_gb": fields.IntegerField(default=0),
    }

    def validate(self, operation: str) -> None:
        """:raises computed.exception.InvalidRequest: naming the field out of range."""
        self.obj_set_defaults()
        for name, low, high in (
            ("vcpus", 1, MAX_VCPUS),
            ("memory_mb", 1, MAX_MEMORY_MB),
            ("disk_gb", 0, MAX_DISK_GB),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise exception.InvalidRequest(
                    operation=operation,
                    reason=f"flavor {name} must be {low} to {high}, got {value}",
                )

    def __str__(self) -> str:
        return f"{self.vcpus} vCPU, {self.memory_mb} MiB, {self.disk_gb} GiB"


@ComputedObjectRegistry.register
class Migration(ComputedObject):
    """One move of one instance, as every step of it sees it.

    ``instance`` is the instance as its source reported it when the move
    began (its devices follow it); ``power_state`` is the state it is left in
    on the destination. ``old_flavor`` is its size before, ``flavor`` after
    (equal but for a resize). ``spec`` is what an evacuation rebuilds from,
    as the scheduler gave it; None otherwise. ``source_data`` and
    ``dest_data`` are the driver's own hand-over between its two hosts
    (where the disks are, the address to migrate to), opaque to everyone else.

    Version 1.0: initial version.
    """

    VERSION = "1.0"

    fields = {
        "id": fields.UUIDField(),
        "instance_uuid": fields.UUIDField(),
        "kind": MigrationKindField(),
        "source_host": fields.StringField(),
        "dest_host": fields.StringField(),
        "power_state": PowerStateField(),
        "flavor": fields.ObjectField("Flavor"),
        "old_flavor": fields.ObjectField("Flavor"),
        "instance": fields.ObjectField("InstanceInfo", nullable=True, default=None),
        "spec": fields.ObjectField("InstanceSpec", nullable=True, default=None),
        "source_data": fields.DictOfStringsField(default={}),
        "dest_data": fields.DictOfStringsField(default={}),
    }
    obj_relationships = {
        "flavor": [("1.0", "1.0")],
        "old_flavor": [("1.0", "1.0")],
        "instance": [("1.0", "1.2")],
        "spec": [("1.0", "1.2")],
    }

    @property
    def same_host(self) -> bool:
        """Whether the instance stays on its host (a resize)."""
        return bool(self.source_host == self.dest_host)

    def validate(self, operation: str) -> None:
        """Check what a driver relies on.

        :raises computed.exception.InvalidRequest: naming what is wrong.
        """
        for name in ("id", "instance_uuid", "kind", "source_host", "dest_host", "flavor"):
            if not self.obj_attr_is_set(name):
                raise exception.InvalidRequest(
                    operation=operation, reason=f"migration field {name!r} is required"
                )
        self.obj_set_defaults()
        self.flavor.validate(operation)
        self.old_flavor.validate(operation)
        if self.kind == MigrationKind.RESIZE and not self.same_host:
            raise exception.InvalidRequest(
                operation=operation, reason="a resize keeps the instance on its host"
            )
        if self.kind != MigrationKind.RESIZE and self.same_host:
            raise exception.InvalidRequest(
                operation=operation,
                reason=f"a {self.kind} migration needs a destination other than "
                f"its source {self.source_host}",
            )
        if self.flavor.disk_gb < self.old_flavor.disk_gb:
            raise exception.InvalidRequest(
                operation=operation,
                reason=f"disks do not shrink: {self.old_flavor.disk_gb} GiB to "
                f"{self.flavor.disk_gb} GiB",
            )
        if self.kind == MigrationKind.EVACUATION and self.spec is None:
            raise exception.InvalidRequest(
                operation=operation, reason="an evacuation needs the instance's spec"
            )
        if self.spec is not None:
            self.spec.validate()
            if self.spec.uuid != self.instance_uuid:
                raise exception.InvalidRequest(
                    operation=operation, reason="the spec is of another instance"
                )
        for name in ("source_data", "dest_data"):
            data = getattr(self, name)
            if len(data) > MAX_DATA_ITEMS or any(
                len(k) > 255 or len(v) > MAX_DATA_LENGTH for k, v in data.items()
            ):
                raise exception.InvalidRequest(
                    operation=operation,
                    reason=f"{name} holds at most {MAX_DATA_ITEMS} items of "
                    f"{MAX_DATA_LENGTH} characters",
                )

    def describe(self) -> str:
        """One line for logs and errors."""
        if self.same_host:
            return f"{self.kind} {self.id} of {self.instance_uuid} on {self.source_host}"
        return (
            f"{self.kind} migration {self.id} of {self.instance_uuid} "
            f"from {self.source_host} to {self.dest_host}"
        )
