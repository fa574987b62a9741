"""A toy hypervisor that cannot suspend and only reboots hard.

Written only against the public contract (``drivers.base``,
``computed.objects``, ``computed.exception``), as any vendor driver would be.
"""

from __future__ import annotations

import threading

from computed import exception
from computed.objects import HostResources, InstanceInfo, InstanceSpec, PowerState
from drivers import base

__all__ = ["ToyDriver"]


class ToyDriver(base.ComputeDriver):
    name = "example"
    version = "0.3.0"
    # Listed one by one: a driver that claimed "everything but suspend" would
    # silently claim every operation a later contract version adds.
    operations = frozenset(
        {
            "spawn",
            "destroy",
            "reboot",
            "power_on",
            "power_off",
            "pause",
            "unpause",
            "get_info",
            "list_instances",
            "get_host_resources",
            "get_capabilities",
            "ping",
        }
    )
    features = frozenset({"reboot.hard"})

    def __init__(self, conf) -> None:  # type: ignore[no-untyped-def]
        super().__init__(conf)
        self._lock = threading.Lock()
        self._vms: dict[str, dict[str, tuple[InstanceSpec, str]]] = {}

    def init_host(self, host: str) -> None:
        with self._lock:
            self._vms.setdefault(host, {})

    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        with self._lock:
            vms = self._vms[host]
            if spec.uuid not in vms:
                vms[spec.uuid] = (spec, PowerState.RUNNING)
            return self._info(host, *vms[spec.uuid])

    def destroy(self, host: str, uuid: str) -> None:
        with self._lock:
            self._vms[host].pop(uuid, None)

    def get_info(self, host: str, uuid: str) -> InstanceInfo:
        with self._lock:
            return self._info(host, *self._find(host, uuid))

    def list_instances(self, host: str) -> list[InstanceInfo]:
        with self._lock:
            return [self._info(host, spec, state) for spec, state in self._vms[host].values()]

    def reboot(self, host: str, uuid: str, reboot_type: str) -> InstanceInfo:
        return self._move(host, uuid, f"reboot.{reboot_type}")

    def power_on(self, host: str, uuid: str) -> InstanceInfo:
        return self._move(host, uuid, "power_on")

    def power_off(self, host: str, uuid: str) -> InstanceInfo:
        return self._move(host, uuid, "power_off")

    def pause(self, host: str, uuid: str) -> InstanceInfo:
        return self._move(host, uuid, "pause")

    def unpause(self, host: str, uuid: str) -> InstanceInfo:
        return self._move(host, uuid, "unpause")

    def get_host_resources(self, host: str) -> HostResources:
        with self._lock:
            specs = [spec for spec, _ in self._vms[host].values()]
        return HostResources(
            host=host,
            hypervisor_type="toy",
            hypervisor_version=self.version,
            vcpus=32,
            vcpus_used=sum(s.vcpus for s in specs),
            memory_mb=65536,
            memory_mb_used=sum(s.memory_mb for s in specs),
            disk_gb=1000,
            disk_gb_used=sum(s.disk_gb for s in specs),
            instances=len(specs),
        )

    def _move(self, host: str, uuid: str, operation: str) -> InstanceInfo:
        with self._lock:
            spec, state = self._find(host, uuid)
            if base.plan_transition(operation, uuid, state):
                state = base.TRANSITIONS[operation].target
                self._vms[host][uuid] = (spec, state)
            return self._info(host, spec, state)

    def _find(self, host: str, uuid: str) -> tuple[InstanceSpec, str]:
        try:
            return self._vms[host][uuid]
        except KeyError:
            raise exception.InstanceNotFound(uuid=uuid, host=host) from None

    @staticmethod
    def _info(host: str, spec: InstanceSpec, state: str) -> InstanceInfo:
        return InstanceInfo(
            uuid=spec.uuid,
            name=spec.name,
            host=host,
            power_state=state,
            vcpus=spec.vcpus,
            memory_mb=spec.memory_mb,
            disk_gb=spec.disk_gb,
        )
