"""A hypervisor that follows the contract to the letter, in memory or in shared files.

Every host the worker serves gets its own table of instances, kept by a
store (:mod:`drivers.fake._store`): the worker's memory by default, or, with
``[fake] state_dir``, one file per host that outlives the worker, so that
the worker that serves a host next finds its instances, as it would on a
real hypervisor. Nothing is random: the same sequence of operations always
gives the same results, in either store, which makes this driver the
reference the conformance checks are written against.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping

from oslo_config import cfg

from computed import exception
from computed.objects import HostResources, InstanceInfo, InstanceSpec, PowerState
from drivers import base
from drivers._backend import ServedHosts
from drivers.fake import conf as fake_conf
from drivers.fake._store import FileStore, Instance, MemoryStore, Store, StoreError

__all__ = ["FakeDriver"]


class FakeDriver(base.TransitionDriver):
    """The reference driver; see :mod:`drivers.base` for the semantics it implements."""

    name = "fake"
    version = "1.0"
    operations = frozenset(base.ALL_OPERATIONS)
    support_tier = base.SupportTier.CONFORMANT

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        state_dir = conf.fake.state_dir
        self._store: Store = FileStore(state_dir) if state_dir else MemoryStore()
        self._hosts: ServedHosts[Store, StoreError] = ServedHosts(
            self.name, (StoreError,), self._store_error
        )

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
        self._delay(self.conf.fake.spawn_delay)
        created = Instance.from_spec(spec, PowerState.RUNNING)
        _boot_log(created)
        with self._changing(host) as instances:
            return self._info(host, instances.setdefault(spec.uuid, created))

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
            disk_gb_used=sum(i.disk_gb for i in present),
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

    @contextlib.contextmanager
    def _reading(self, host: str) -> Iterator[Mapping[str, Instance]]:
        store = self._hosts[host]
        with self._store_errors(host), store.reading(host) as instances:
            yield instances

    @contextlib.contextmanager
    def _changing(self, host: str) -> Iterator[dict[str, Instance]]:
        store = self._hosts[host]
        with self._store_errors(host), store.changing(host) as instances:
            yield instances

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
        )

    @staticmethod
    def _delay(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def _find(instances: Mapping[str, Instance], host: str, uuid: str) -> Instance:
    instance = instances.get(uuid)
    if instance is None:
        raise exception.InstanceNotFound(uuid=uuid, host=host)
    return instance


def _boot_log(instance: Instance) -> None:
    instance.log(f"fake hypervisor: booting {instance.name} ({instance.uuid})")
    if instance.description:
        instance.log(f"description: {instance.description}")
    cpus, memory, disk = instance.vcpus, instance.memory_mb, instance.disk_gb
    instance.log(f"cpus: {cpus}, memory: {memory} MiB, disk: {disk} GiB")
    instance.log(f"{instance.name} login:")
