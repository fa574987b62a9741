"""Three bugs, each of which one conformance check must name.

* spawn is not idempotent: a repeated UUID makes a second instance
  (``spawn.idempotent``), running whatever the first one's state
  (``spawn.existing_unchanged``);
* destroying a missing instance fails (``destroy.missing``);
* memory in use is never counted (``host.resources_track_instances``).
"""

from __future__ import annotations

import threading

from computed import exception
from computed.objects import HostResources, InstanceInfo, InstanceSpec, PowerState
from drivers import base

__all__ = ["BrokenDriver", "EXPECTED_FAILURES"]

#: The check ids the suite must report for this driver, in the suite's order.
EXPECTED_FAILURES = [
    "host.resources_track_instances",
    "spawn.idempotent",
    "destroy.missing",
    "spawn.existing_unchanged",
]


class BrokenDriver(base.ComputeDriver):
    name = "broken"
    version = "0.0.1"

    def __init__(self, conf) -> None:  # type: ignore[no-untyped-def]
        super().__init__(conf)
        self._lock = threading.Lock()
        self._vms: dict[str, list[list]] = {}  # host -> [spec, state] entries, duplicates allowed

    def init_host(self, host: str) -> None:
        self._vms.setdefault(host, [])

    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        with self._lock:
            self._vms[host].append([spec, PowerState.RUNNING])  # bug: no idempotence
            return self._info(host, spec, PowerState.RUNNING)

    def destroy(self, host: str, uuid: str) -> None:
        with self._lock:
            if not any(e[0].uuid == uuid for e in self._vms[host]):
                raise exception.InstanceNotFound(uuid=uuid, host=host)  # bug
            self._vms[host] = [e for e in self._vms[host] if e[0].uuid != uuid]

    def get_info(self, host: str, uuid: str) -> InstanceInfo:
        with self._lock:
            entry = self._find(host, uuid)
            return self._info(host, entry[0], entry[1])

    def list_instances(self, host: str) -> list[InstanceInfo]:
        with self._lock:
            return [self._info(host, spec, state) for spec, state in self._vms[host]]

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

    def suspend(self, host: str, uuid: str) -> InstanceInfo:
        return self._move(host, uuid, "suspend")

    def resume(self, host: str, uuid: str) -> InstanceInfo:
        return self._move(host, uuid, "resume")

    def get_host_resources(self, host: str) -> HostResources:
        with self._lock:
            specs = [e[0] for e in self._vms[host]]
        return HostResources(
            host=host,
            hypervisor_type="broken",
            hypervisor_version=self.version,
            vcpus=16,
            vcpus_used=sum(s.vcpus for s in specs),
            memory_mb=16384,
            memory_mb_used=0,  # bug: memory in use never counted
            disk_gb=100,
            disk_gb_used=0,
            instances=len(specs),
        )

    def _move(self, host: str, uuid: str, operation: str) -> InstanceInfo:
        with self._lock:
            entry = self._find(host, uuid)
            if base.plan_transition(operation, uuid, entry[1]):
                entry[1] = base.TRANSITIONS[operation].target
            return self._info(host, entry[0], entry[1])

    def _find(self, host: str, uuid: str) -> list:
        for entry in self._vms[host]:
            if entry[0].uuid == uuid:
                return entry
        raise exception.InstanceNotFound(uuid=uuid, host=host)

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
