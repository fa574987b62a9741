"""Drivers that break one documented semantic each, and the checks that must say so.

Each is the fake driver (the executable specification), restricted to the
operations of contract 1.0, with one method made wrong. :data:`VARIANTS`
names, for each entry point, the check ids the conformance suite must report
failing, in the suite's order, and no others.
"""

from __future__ import annotations

from typing import Any

from computed import exception
from computed.objects import HostResources, InstanceInfo, InstanceSpec, PowerState
from drivers import base
from drivers.fake import FakeDriver

__all__ = [
    "VARIANTS",
    "ForgetfulResources",
    "GlobalSpawn",
    "OwnMissingError",
    "ResettingSpawn",
    "ResumeReturnsNothing",
]


class _OneBug(FakeDriver):
    """The fake driver, claiming the 1.0 operations only, as a small driver would."""

    version = "0.0.1"
    operations = frozenset(base.OPERATIONS_1_0)
    features = frozenset({"reboot.soft", "reboot.hard"})
    support_tier = base.SupportTier.UNTESTED


class ResettingSpawn(_OneBug):
    """A repeated spawn boots the existing instance again: a stopped one comes back running."""

    name = "broken-respawn"

    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        info = super().spawn(host, spec)
        restart = {
            PowerState.STOPPED: "power_on",
            PowerState.PAUSED: "unpause",
            PowerState.SUSPENDED: "resume",
        }
        if info.power_state in restart:
            return self.transition(host, spec.uuid, restart[info.power_state])
        return info


class _NoSuchVM(Exception):
    """The driver's own error, where the contract wants InstanceNotFound."""


class OwnMissingError(_OneBug):
    """Power operations on a missing instance raise the driver's own error."""

    name = "broken-missing"

    def transition(self, host: str, uuid: str, operation: str) -> InstanceInfo:
        try:
            return super().transition(host, uuid, operation)
        except exception.InstanceNotFound as exc:
            raise _NoSuchVM(f"VM {uuid} does not exist") from exc


class ForgetfulResources(_OneBug):
    """Destroy never gives back the memory its instance used."""

    name = "broken-leak"

    def __init__(self, conf: Any) -> None:
        super().__init__(conf)
        self._gone_mb: dict[str, int] = {}

    def destroy(self, host: str, uuid: str) -> None:
        try:
            memory_mb = self.get_info(host, uuid).memory_mb
        except exception.InstanceNotFound:
            memory_mb = 0
        super().destroy(host, uuid)
        self._gone_mb[host] = self._gone_mb.get(host, 0) + memory_mb

    def get_host_resources(self, host: str) -> HostResources:
        resources = super().get_host_resources(host)
        resources.memory_mb_used += self._gone_mb.get(host, 0)
        return resources


class GlobalSpawn(_OneBug):
    """Idempotent by UUID across hosts: a UUID spawned on one host is never made on another."""

    name = "broken-global"

    def __init__(self, conf: Any) -> None:
        super().__init__(conf)
        self._served: list[str] = []

    def init_host(self, host: str) -> None:
        super().init_host(host)
        self._served.append(host)

    def spawn(self, host: str, spec: InstanceSpec) -> InstanceInfo:
        for other in self._served:
            if other != host:
                try:
                    return self.get_info(other, spec.uuid)
                except exception.InstanceNotFound:
                    pass
        return super().spawn(host, spec)


class ResumeReturnsNothing(_OneBug):
    """Resume resumes, then returns None instead of the instance."""

    name = "broken-returns"

    def resume(self, host: str, uuid: str) -> Any:
        super().resume(host, uuid)
        return None


#: Entry point -> the check ids that must fail, in the suite's order.
VARIANTS: dict[str, list[str]] = {
    "broken-respawn": ["spawn.existing_unchanged"],
    "broken-missing": [
        "missing.power_on",
        "missing.power_off",
        "missing.pause",
        "missing.unpause",
        "missing.suspend",
        "missing.resume",
        "missing.reboot.soft",
        "missing.reboot.hard",
    ],
    "broken-leak": ["host.resources_track_instances"],
    "broken-global": ["spawn.idempotent_per_host"],
    "broken-returns": [
        "transition.resume.from_running",
        "transition.resume.from_suspended",
        "cast.resume",
    ],
}
