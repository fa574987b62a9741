"""A hypervisor that follows the contract to the letter, in memory or in shared files.

Every host the worker serves gets its own table of instances, kept by a
store (:mod:`drivers.fake._store`): the worker's memory by default, or, with
``[fake] state_dir``, one file per host that outlives the worker, so that
the worker that serves a host next finds its instances, as it would on a
real hypervisor. Nothing is random: the same sequence of operations always
gives the same results, in either store, which makes this driver the
reference the conformance checks are written against.

Devices (contract 1.2) are kept with their instance: disks named ``vda``
(the root disk), ``vdb``, ... unless the caller names one, volumes by id
without their connection info, interfaces as tap devices on the networks
``[fake] networks`` lists. :mod:`drivers.fake._devices` holds the rules.

Images (contract 1.3) are kept beside the instances, by id, and outlive
them; a snapshot takes ``[fake] snapshot_delay`` seconds, reporting its
progress in quarters. A rescue boots the rescue image with the root disk as
a second disk, which only the console log shows. Consoles are addresses on the
host (``[fake] console_host``) with ports derived from the instance's
UUID: the fake hypervisor names them, but nothing listens there.

Moves (contract 1.4) go between hosts of one store (one ``[fake]
state_dir``, or one worker's memory): the source keeps its copy of a
migrated instance in its ``moves`` table until the move is confirmed or
reverted, and a live migration takes ``[fake] live_migration_delay``
seconds, reporting its progress in quarters, and can be aborted between
quarters. An evacuation finds the instance in the dead host's table (the
store is their shared storage) or builds it from its spec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from oslo_config import cfg
from oslo_utils import netutils

from computed import exception
from computed.objects import (
    ConsoleConnection,
    ConsoleKind,
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
from drivers import base
from drivers._backend import ServedHosts
from drivers.fake import _devices
from drivers.fake import conf as fake_conf
from drivers.fake._store import (
    IMAGES,
    INSTANCES,
    MOVES,
    FileStore,
    Held,
    Image,
    Instance,
    MemoryStore,
    Store,
    StoreError,
    Tables,
)

#: Plans a device change on an instance, given the host's instances (see _devices).
_Plan = Callable[[Mapping[str, Instance], Instance], _devices.Change]

__all__ = ["FakeDriver"]


class FakeDriver(base.TransitionDriver):
    """The reference driver; see :mod:`drivers.base` for the semantics it implements."""

    name = "fake"
    version = "1.0"
    operations = frozenset(base.ALL_OPERATIONS)
    features = base.FEATURES
    support_tier = base.SupportTier.CONFORMANT

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        state_dir = conf.fake.state_dir
        self._store: Store = FileStore(state_dir) if state_dir else MemoryStore()
        self._hosts: ServedHosts[Store, StoreError] = ServedHosts(
            self.name, (StoreError,), self._store_error
        )
        self._ip = netutils.get_my_ipv4()
        #: Migration ids whose live migration was asked to stop.
        self._aborts: set[str] = set()
        self._aborts_lock = threading.Lock()

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        fake_conf.register_opts(conf)

    def init_host(self, host: str) -> None:
        with self._store_errors(host, "init_host"):
            self._store.attach(host)
        self._hosts.serve(host, self._store)

    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        with self._reading(host) as instances:
            existing = instances.get(spec.uuid)
            if existing is not None:
                return self._info(host, existing)
        created = Instance.from_spec(spec, PowerState.RUNNING)
        created.block_devices = _devices.disks_of(spec)
        created.network_interfaces = _devices.ports_of(spec, host, self.conf.fake.networks)
        self._delay(self.conf.fake.spawn_delay)
        _boot_log(created)
        with self._changing(host) as instances:
            existing = instances.get(spec.uuid)
            if existing is None:
                _devices.check_macs(host, instances, created)
                existing = instances[spec.uuid] = created
            return self._info(host, existing)

    def destroy(self, host: str, uuid: str) -> None:
        with self._changing(host) as instances:
            found = instances.pop(uuid, None)
        if found is not None:
            self._delay(self.conf.fake.action_delay)

    def get_info(self, host: str, uuid: str) -> InstanceInfo:
        with self._reading(host) as instances:
            return self._info(host, _find(instances, host, uuid))

    def list_instances(self, host: str) -> list[InstanceInfo]:
        with self._reading(host) as instances:
            return [self._info(host, instance) for instance in instances.values()]

    def get_console_output(self, host: str, uuid: str, tail_lines: int | None) -> str:
        with self._reading(host) as instances:
            lines = list(_find(instances, host, uuid).console)
        if tail_lines is not None:
            lines = lines[len(lines) - tail_lines :] if tail_lines else []
        return "".join(line + "\n" for line in lines)

    # Devices ---------------------------------------------------------------

    def get_volume_connector(self, host: str) -> VolumeConnector:
        self._hosts[host]  # a host this worker does not serve is an error
        return VolumeConnector(
            host=host,
            ip=self._ip,
            initiator=_devices.initiator_name(self.conf.fake.iscsi_initiator, host),
            wwpns=[],
            multipath=False,
            platform=platform.machine(),
            os_type=sys.platform,
        )

    def attach_volume(
        self, host: str, uuid: str, connection_info: VolumeConnection, mountpoint: str | None
    ) -> InstanceInfo:
        return self._change_devices(
            host,
            uuid,
            lambda _, instance: _devices.plan_attach_volume(
                host, instance, connection_info, mountpoint
            ),
        )

    def detach_volume(self, host: str, uuid: str, volume_id: str) -> InstanceInfo:
        return self._change_devices(
            host, uuid, lambda _, instance: _devices.plan_detach_volume(instance, volume_id)
        )

    def extend_volume(self, host: str, uuid: str, volume_id: str, new_size: int) -> InstanceInfo:
        return self._change_devices(
            host,
            uuid,
            lambda _, instance: _devices.plan_extend_volume(host, instance, volume_id, new_size),
        )

    def attach_interface(self, host: str, uuid: str, vif: NetworkInterface) -> InstanceInfo:
        networks = self.conf.fake.networks
        return self._change_devices(
            host,
            uuid,
            lambda instances, instance: _devices.plan_attach_interface(
                host, networks, instances, instance, vif
            ),
        )

    def detach_interface(self, host: str, uuid: str, port_id: str) -> InstanceInfo:
        return self._change_devices(
            host, uuid, lambda _, instance: _devices.plan_detach_interface(instance, port_id)
        )

    # Images, rescue and consoles ---------------------------------------------

    def snapshot(self, host: str, uuid: str, image_name: str, progress: base.Progress) -> ImageRef:
        image_id = str(uuid_module.uuid5(uuid_module.UUID(uuid), image_name))
        with self._reading(host, IMAGES) as images:
            taken = images.get(image_id)
        if taken is not None:
            return self._image_ref(host, taken)
        with self._reading(host) as instances:
            instance = _find(instances, host, uuid)
            base.check_state("snapshot", uuid, instance.power_state, base.SNAPSHOT_STATES)
            size = instance.disk_gb << 30
        for quarter in range(4):
            progress(quarter * 25)
            self._delay(self.conf.fake.snapshot_delay / 4)
        with self._changing(host) as instances:
            # Looked at again: the instance may have gone or changed meanwhile.
            instance = _find(instances, host, uuid)
            base.check_state("snapshot", uuid, instance.power_state, base.SNAPSHOT_STATES)
            instance.log(f"snapshot: {image_name}")
        taken = Image(image_id, image_name, uuid, "raw", size)
        with self._changing(host, IMAGES) as images:
            taken = images.setdefault(image_id, taken)
        return self._image_ref(host, taken)

    def delete_image(self, host: str, image_id: str) -> None:
        with self._changing(host, IMAGES) as images:
            images.pop(image_id, None)

    def rescue(self, host: str, uuid: str, rescue_image: str | None) -> InstanceInfo:
        with self._changing(host) as instances:
            instance = _find(instances, host, uuid)
            if not base.plan_transition("rescue", uuid, instance.power_state):
                return self._info(host, instance)
            image = rescue_image or instance.image
            if image is None:
                raise exception.InvalidRequest(
                    operation="rescue",
                    reason=f"instance {uuid} has no image to boot a rescue from: name a rescue image",
                )
            instance.power_state = PowerState.RESCUED
            root = next((d for d in instance.block_devices if d.boot_index == 0), None)
            instance.log(
                f"rescue: booting {image}, with {root.device_name if root else 'vda'} as the second disk"
            )
            return self._info(host, instance)

    def unrescue(self, host: str, uuid: str) -> InstanceInfo:
        with self._changing(host) as instances:
            instance = _find(instances, host, uuid)
            if base.plan_transition("unrescue", uuid, instance.power_state):
                instance.power_state = PowerState.RUNNING
                instance.log("unrescue: booting from the instance's own disk")
                _boot_log(instance)
            return self._info(host, instance)

    def get_serial_console(self, host: str, uuid: str) -> ConsoleConnection:
        return self._console(host, uuid, ConsoleKind.SERIAL, "tcp", 10000)

    def get_graphical_console(self, host: str, uuid: str) -> ConsoleConnection:
        return self._console(host, uuid, ConsoleKind.GRAPHICAL, "vnc", 5900)

    # Moving instances --------------------------------------------------------

    def check_migration_destination(self, host: str, migration: Migration) -> dict[str, str]:
        with self._reading(host) as instances:
            present = migration.instance_uuid in instances
        with self._reading(host, MOVES) as moves:
            ours = migration.id in moves
        if present and not ours and migration.kind != "resize":
            raise exception.MigrationPreCheckFailed(
                host=host,
                uuid=migration.instance_uuid,
                reason="an instance with that UUID is already there",
            )
        info = migration.instance
        networks = set(self.conf.fake.networks)
        wanted = info.network_interfaces if info is not None else []
        if migration.spec is not None:
            wanted = migration.spec.network_interfaces
        missing = sorted({vif.network for vif in wanted} - networks)
        if missing:
            raise exception.MigrationPreCheckFailed(
                host=host,
                uuid=migration.instance_uuid,
                reason=f"it has no network {', '.join(missing)} ([fake] networks)",
            )
        return {"backend": self._hosts[host].backend}

    def migrate_disk_and_power_off(
        self, host: str, uuid: str, migration: Migration
    ) -> dict[str, str]:
        self._check_backend(host, migration)
        with self._reading(host, MOVES) as moves:
            if migration.id in moves:
                return {"held": migration.id}
        with self._reading(host) as instances:
            state = _find(instances, host, uuid).power_state
        base.check_state("migrate_disk_and_power_off", uuid, state, base.COLD_MIGRATION_STATES)
        self._delay(self.conf.fake.action_delay)
        with self._changing_hosts(host) as tables:
            instances, moves = tables[host][INSTANCES], tables[host][MOVES]
            if migration.id not in moves:
                instance = _find(instances, host, uuid)
                base.check_state(
                    "migrate_disk_and_power_off",
                    uuid,
                    instance.power_state,
                    base.COLD_MIGRATION_STATES,
                )
                moves[migration.id] = Held(migration.id, "source", _copy(instance))
                instance.power_state = PowerState.STOPPED
                instance.log(f"{migration.kind}: stopped, disks handed to {migration.dest_host}")
        return {"held": migration.id}

    def finish_migration(self, host: str, migration: Migration) -> InstanceInfo:
        source, uuid = migration.source_host, migration.instance_uuid
        self._delay(self.conf.fake.action_delay)
        with self._changing_hosts(host, source) as tables:
            held = tables[source][MOVES].get(migration.id)
            arrived = tables[host][INSTANCES].get(uuid)
            if held is None or held.finished:
                if arrived is None:
                    raise exception.InstanceNotFound(uuid=uuid, host=host)
                return self._info(host, arrived)
            instance = tables[source][INSTANCES].pop(uuid, None) or _copy(held.instance)
            _resize(instance, migration)
            instance.power_state = migration.power_state
            if not migration.same_host:
                _devices.check_macs(host, tables[host][INSTANCES], instance)
            tables[host][INSTANCES][uuid] = instance
            held.finished = True
            instance.log(f"{migration.kind}: now on {host}, {migration.flavor}")
            if instance.power_state == PowerState.RUNNING:
                _boot_log(instance)
            return self._info(host, instance)

    def confirm_migration(self, host: str, migration: Migration) -> None:
        with self._changing(host, MOVES) as moves:
            moves.pop(migration.id, None)

    def revert_migration(self, host: str, migration: Migration) -> None:
        if migration.same_host:
            return
        source, uuid = migration.source_host, migration.instance_uuid
        with self._changing_hosts(host, source) as tables:
            held = tables[source][MOVES].get(migration.id)
            if held is not None and held.finished:
                # Only the copy this move built: never an instance it did not bring.
                tables[host][INSTANCES].pop(uuid, None)
                held.finished = False

    def finish_revert_migration(self, host: str, migration: Migration) -> InstanceInfo:
        uuid = migration.instance_uuid
        with self._changing_hosts(host) as tables:
            instances, moves = tables[host][INSTANCES], tables[host][MOVES]
            held = moves.pop(migration.id, None)
            if held is not None and held.instance is not None:
                instance = instances[uuid] = _copy(held.instance)
                instance.log(f"{migration.kind} reverted: back to {migration.old_flavor}")
                if instance.power_state == PowerState.RUNNING:
                    _boot_log(instance)
            return self._info(host, _find(instances, host, uuid))

    def pre_live_migration(self, host: str, migration: Migration) -> dict[str, str]:
        with self._changing(host, MOVES) as moves:
            moves.setdefault(migration.id, Held(migration.id, "incoming"))
        return {}

    def live_migration(
        self, host: str, uuid: str, migration: Migration, progress: base.Progress
    ) -> None:
        self._check_backend(host, migration)
        dest = migration.dest_host
        with self._changing_hosts(host, dest) as tables:
            if uuid not in tables[host][INSTANCES] and uuid in tables[dest][INSTANCES]:
                return  # it has left already
            state = _find(tables[host][INSTANCES], host, uuid).power_state
            base.check_state("live_migration", uuid, state, base.LIVE_MIGRATION_STATES)
        for quarter in range(4):
            self._check_abort(migration)
            progress(quarter * 25)
            self._delay(self.conf.fake.live_migration_delay / 4)
        self._check_abort(migration)
        with self._changing_hosts(host, dest) as tables:
            if migration.id not in tables[dest][MOVES]:
                raise exception.MigrationError(
                    migration=migration.describe(), reason=f"{dest} is not prepared for it"
                )
            instance = _find(tables[host][INSTANCES], host, uuid)
            _devices.check_macs(dest, tables[dest][INSTANCES], instance)
            del tables[host][INSTANCES][uuid]
            tables[dest][INSTANCES][uuid] = instance
            del tables[dest][MOVES][migration.id]
            instance.log(f"live migration: from {host} to {dest}, {instance.power_state}")
        with self._aborts_lock:
            self._aborts.discard(migration.id)

    def post_live_migration_at_destination(self, host: str, migration: Migration) -> InstanceInfo:
        with self._reading(host) as instances:
            return self._info(host, _find(instances, host, migration.instance_uuid))

    def rollback_live_migration_at_destination(self, host: str, migration: Migration) -> None:
        with self._changing(host, MOVES) as moves:
            moves.pop(migration.id, None)
        with self._aborts_lock:
            self._aborts.discard(migration.id)

    def abort_live_migration(self, host: str, uuid: str, migration: Migration) -> None:
        self._hosts[host]  # a host this worker does not serve is an error
        with self._aborts_lock:
            self._aborts.add(migration.id)

    def evacuate(self, host: str, migration: Migration) -> InstanceInfo:
        spec, source = migration.spec, migration.source_host
        uuid = migration.instance_uuid
        with self._reading(host) as instances:
            if uuid in instances:
                return self._info(host, instances[uuid])
        self._delay(self.conf.fake.spawn_delay)
        with self._changing_hosts(host, source) as tables:
            instances = tables[host][INSTANCES]
            if uuid in instances:
                return self._info(host, instances[uuid])
            on_source = tables[source][INSTANCES].get(uuid)
            if on_source is not None:  # the store is the hosts' shared storage
                instance = _copy(on_source)
                instance.log(f"evacuated from {source}: its disks, on shared storage")
            else:
                instance = Instance.from_spec(spec, PowerState.RUNNING)
                instance.block_devices = _devices.disks_of(spec)
                instance.network_interfaces = _devices.ports_of(spec, host, self.conf.fake.networks)
                instance.log(f"evacuated from {source}: rebuilt from its image")
            _devices.check_macs(host, instances, instance)
            instance.power_state = migration.power_state
            if instance.power_state == PowerState.RUNNING:
                _boot_log(instance)
            instances[uuid] = instance
            return self._info(host, instance)

    def _check_backend(self, host: str, migration: Migration) -> None:
        """Both hosts of a move must be in this store: it is what carries the disks."""
        mine = self._hosts[host].backend
        theirs = migration.dest_data.get("backend")
        if theirs != mine:
            raise exception.MigrationPreCheckFailed(
                host=migration.dest_host,
                uuid=migration.instance_uuid,
                reason=f"its fake hypervisor keeps instances in {theirs}, {host}'s in {mine}: "
                "fake hosts move instances only within one [fake] state_dir",
            )

    def _check_abort(self, migration: Migration) -> None:
        with self._aborts_lock:
            aborted = migration.id in self._aborts
            self._aborts.discard(migration.id)
        if aborted:
            raise exception.MigrationAborted(
                migration=migration.id,
                uuid=migration.instance_uuid,
                reason="asked to stop; the instance runs on its source",
            )

    @contextlib.contextmanager
    def _changing_hosts(self, served: str, *others: str) -> Iterator[Tables]:
        """Every table of ``served`` (a host of this worker) and ``others``, in one transaction."""
        store = self._hosts[served]
        with self._store_errors(served), store.changing_hosts([served, *others]) as tables:
            yield tables

    # Host ------------------------------------------------------------------

    def get_host_resources(self, host: str) -> HostResources:
        with self._reading(host) as instances:
            present = list(instances.values())
        fake = self.conf.fake
        return HostResources(
            host=host,
            hypervisor_type="fake",
            hypervisor_version=self.version,
            vcpus=fake.vcpus,
            vcpus_used=sum(i.vcpus for i in present),
            memory_mb=fake.memory_mb,
            memory_mb_used=sum(i.memory_mb for i in present),
            disk_gb=fake.disk_gb,
            disk_gb_used=sum(i.local_gb for i in present),
            instances=len(present),
        )

    # ---------------------------------------------------------------------

    def transition(self, host: str, uuid: str, operation: str) -> InstanceInfo:
        with self._reading(host) as instances:
            state = _find(instances, host, uuid).power_state
        if base.plan_transition(operation, uuid, state):
            self._delay(self.conf.fake.action_delay)
        with self._changing(host) as instances:
            instance = _find(instances, host, uuid)
            # Planned again: in a handover, another worker may have served
            # this host while the operation took its time.
            if base.plan_transition(operation, uuid, instance.power_state):
                instance.power_state = base.TRANSITIONS[operation].target
                instance.log(f"{operation}: now {instance.power_state}")
                if operation.startswith("reboot.") or operation in ("power_on", "resume"):
                    _boot_log(instance)
            return self._info(host, instance)

    def _change_devices(self, host: str, uuid: str, plan: _Plan) -> InstanceInfo:
        """Plan a device change, take the fake's time if it acts, then plan again and apply.

        Planned twice for the same reason as :meth:`transition`: another
        worker may have served the host meanwhile.
        """
        with self._reading(host) as instances:
            acts = plan(instances, _find(instances, host, uuid)) is not None
        if acts:
            self._delay(self.conf.fake.action_delay)
        with self._changing(host) as instances:
            instance = _find(instances, host, uuid)
            change = plan(instances, instance)
            if change is not None:
                change()
            return self._info(host, instance)

    def _console(
        self, host: str, uuid: str, kind: str, protocol: str, first_port: int
    ) -> ConsoleConnection:
        with self._reading(host) as instances:
            state = _find(instances, host, uuid).power_state
        operation = f"get_{kind}_console"
        base.check_state(operation, uuid, state, base.CONSOLE_STATES)
        return ConsoleConnection(
            instance_uuid=uuid,
            kind=kind,
            protocol=protocol,
            host=self.conf.fake.console_host,
            port=first_port + uuid_module.UUID(uuid).int % 1000,
            token=str(uuid_module.uuid5(uuid_module.UUID(uuid), operation)),
        )

    @staticmethod
    def _image_ref(host: str, image: Image) -> ImageRef:
        return ImageRef(
            image_id=image.image_id,
            name=image.name,
            instance_uuid=image.instance_uuid,
            host=host,
            location=f"fake://{host}/images/{image.image_id}",
            disk_format=image.disk_format,
            size_bytes=image.size_bytes,
        )

    @contextlib.contextmanager
    def _reading(self, host: str, table: str = INSTANCES) -> Iterator[Mapping[str, Any]]:
        store = self._hosts[host]
        with self._store_errors(host), store.reading(host, table) as rows:
            yield rows

    @contextlib.contextmanager
    def _changing(self, host: str, table: str = INSTANCES) -> Iterator[dict[str, Any]]:
        store = self._hosts[host]
        with self._store_errors(host), store.changing(host, table) as rows:
            yield rows

    @contextlib.contextmanager
    def _store_errors(self, host: str, operation: str = "") -> Iterator[None]:
        try:
            yield
        except StoreError as exc:
            raise self._store_error(exc, host=host, operation=operation, uuid=None) from exc

    def _store_error(
        self, exc: StoreError, /, *, host: str, operation: str, uuid: str | None
    ) -> exception.ComputedError:
        """A state file that cannot be used is the driver failing (the Translate of ServedHosts)."""
        return exception.DriverError(driver=self.name, host=host, reason=str(exc))

    @staticmethod
    def _info(host: str, instance: Instance) -> InstanceInfo:
        return InstanceInfo(
            uuid=instance.uuid,
            name=instance.name,
            host=host,
            power_state=instance.power_state,
            vcpus=instance.vcpus,
            memory_mb=instance.memory_mb,
            disk_gb=instance.disk_gb,
            block_devices=[_devices.reported_disk(d) for d in instance.block_devices],
            network_interfaces=[_devices.reported_port(p) for p in instance.network_interfaces],
        )

    def _delay(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
        hold = self.conf.fake.hold_path
        while hold and os.path.exists(hold):
            time.sleep(0.05)


def _find(instances: Mapping[str, Instance], host: str, uuid: str) -> Instance:
    instance = instances.get(uuid)
    if instance is None:
        raise exception.InstanceNotFound(uuid=uuid, host=host)
    return instance


def _copy(instance: Instance | None) -> Instance:
    """A copy of an instance's record, to keep or to move."""
    assert instance is not None
    return Instance.load(dataclasses.asdict(instance))


def _resize(instance: Instance, migration: Migration) -> None:
    """Give the instance the migration's flavor; its root disk grows with it."""
    flavor = migration.flavor
    instance.vcpus, instance.memory_mb = flavor.vcpus, flavor.memory_mb
    instance.disk_gb = flavor.disk_gb
    for disk in instance.block_devices:
        if disk.boot_index == 0 and disk.volume_id is None and disk.size_gb is not None:
            disk.size_gb = max(disk.size_gb, flavor.disk_gb)


def _boot_log(instance: Instance) -> None:
    instance.log(f"fake hypervisor: booting {instance.name} ({instance.uuid})")
    if instance.description:
        instance.log(f"description: {instance.description}")
    cpus, memory, disk = instance.vcpus, instance.memory_mb, instance.disk_gb
    instance.log(f"cpus: {cpus}, memory: {memory} MiB, disk: {disk} GiB")
    for each in instance.block_devices:
        instance.log(f"{each.device_name}: {each.kind} disk, {each.size_gb or '?'} GiB")
    for port in instance.network_interfaces:
        instance.log(f"{port.device_name}: link up on {port.network}, address {port.mac_address}")
    instance.log(f"{instance.name} login:")
