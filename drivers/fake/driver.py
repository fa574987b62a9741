"""An in-memory hypervisor that follows the contract to the letter.

Every host the worker serves gets its own table of instances. Nothing is
random: the same sequence of operations always gives the same results, which
makes this driver the reference the conformance checks are written against.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from oslo_config import cfg

from computed import exception
from computed.objects import HostResources, InstanceInfo, InstanceSpec, PowerState
from drivers import base
from drivers.fake import conf as fake_conf

__all__ = ["FakeDriver"]


@dataclass
class _Instance:
    spec: InstanceSpec
    power_state: str
    console: list[str] = field(default_factory=list)

    def log(self, text: str) -> None:
        """Append a console line; the clock is the line number, so logs are deterministic."""
        self.console.append(f"[{len(self.console) * 0.25:10.6f}] {text}")


class FakeDriver(base.TransitionDriver):
    """In-memory driver; see :mod:`drivers.base` for the semantics it implements."""

    name = "fake"
    version = "1.0"
    operations = frozenset(base.ALL_OPERATIONS)
    support_tier = base.SupportTier.CONFORMANT

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__(conf)
        self._hosts: dict[str, dict[str, _Instance]] = {}
        self._lock = threading.Lock()

    @classmethod
    def register_opts(cls, conf: cfg.ConfigOpts) -> None:
        fake_conf.register_opts(conf)

    def init_host(self, host: str) -> None:
        with self._lock:
            self._hosts.setdefault(host, {})

    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        with self._lock:
            existing = self._instances(host).get(spec.uuid)
        if existing is not None:
            return self._info(host, existing)
        self._delay(self.conf.fake.spawn_delay)
        instance = _Instance(spec=spec, power_state=PowerState.RUNNING)
        _boot_log(instance)
        with self._lock:
            instance = self._instances(host).setdefault(spec.uuid, instance)
        return self._info(host, instance)

    def destroy(self, host: str, uuid: str) -> None:
        with self._lock:
            found = self._instances(host).pop(uuid, None)
        if found is not None:
            self._delay(self.conf.fake.action_delay)

    def get_info(self, host: str, uuid: str) -> InstanceInfo:
        return self._info(host, self._get(host, uuid))

    def list_instances(self, host: str) -> list[InstanceInfo]:
        return [self._info(host, instance) for instance in self._snapshot(host)]

    def get_console_output(self, host: str, uuid: str, tail_lines: int | None) -> str:
        instance = self._get(host, uuid)
        with self._lock:
            lines = list(instance.console)
        if tail_lines is not None:
            lines = lines[len(lines) - tail_lines :] if tail_lines else []
        return "".join(line + "\n" for line in lines)

    def get_host_resources(self, host: str) -> HostResources:
        instances = [i.spec for i in self._snapshot(host)]
        fake = self.conf.fake
        return HostResources(
            host=host,
            hypervisor_type="fake",
            hypervisor_version=self.version,
            vcpus=fake.vcpus,
            vcpus_used=sum(spec.vcpus for spec in instances),
            memory_mb=fake.memory_mb,
            memory_mb_used=sum(spec.memory_mb for spec in instances),
            disk_gb=fake.disk_gb,
            disk_gb_used=sum(spec.disk_gb for spec in instances),
            instances=len(instances),
        )

    # ---------------------------------------------------------------------

    def transition(self, host: str, uuid: str, operation: str) -> InstanceInfo:
        instance = self._get(host, uuid)
        if base.plan_transition(operation, uuid, instance.power_state):
            self._delay(self.conf.fake.action_delay)
            instance.power_state = base.TRANSITIONS[operation].target
            with self._lock:
                instance.log(f"{operation}: now {instance.power_state}")
                if operation.startswith("reboot.") or operation in ("power_on", "resume"):
                    _boot_log(instance)
        return self._info(host, instance)

    def _instances(self, host: str) -> dict[str, _Instance]:
        try:
            return self._hosts[host]
        except KeyError:
            raise exception.DriverError(
                driver=self.name, host=host, reason="host is not served by this worker"
            ) from None

    def _snapshot(self, host: str) -> list[_Instance]:
        with self._lock:
            return list(self._instances(host).values())

    def _get(self, host: str, uuid: str) -> _Instance:
        with self._lock:
            instance = self._instances(host).get(uuid)
        if instance is None:
            raise exception.InstanceNotFound(uuid=uuid, host=host)
        return instance

    @staticmethod
    def _info(host: str, instance: _Instance) -> InstanceInfo:
        spec = instance.spec
        return InstanceInfo(
            uuid=spec.uuid,
            name=spec.name,
            host=host,
            power_state=instance.power_state,
            vcpus=spec.vcpus,
            memory_mb=spec.memory_mb,
            disk_gb=spec.disk_gb,
        )

    @staticmethod
    def _delay(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def _boot_log(instance: _Instance) -> None:
    spec = instance.spec
    instance.log(f"fake hypervisor: booting {spec.name} ({spec.uuid})")
    if spec.obj_attr_is_set("description") and spec.description:
        instance.log(f"description: {spec.description}")
    instance.log(f"cpus: {spec.vcpus}, memory: {spec.memory_mb} MiB, disk: {spec.disk_gb} GiB")
    instance.log(f"{spec.name} login:")
