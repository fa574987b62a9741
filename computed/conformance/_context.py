"""What a check can use: the client, the hosts under test and helpers for instances."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import shlex
import subprocess
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

from oslo_context import context

from computed import exception
from computed.conf.conformance import DEFAULT_IMAGE, DEFAULT_NETWORK, DEFAULT_VOLUME_PATH
from computed.objects import (
    HostCapabilities,
    InstanceInfo,
    InstanceSpec,
    NetworkInterface,
    PowerState,
    VolumeConnection,
)
from computed.testing.notifications import Notification, NotificationCollector
from drivers import base
from rpcapi import ComputeAPI

__all__ = ["CheckFailed", "CheckSkipped", "SuiteContext", "REACH", "expect", "expect_error"]

#: The operation that brings a running instance into each state.
REACH = {
    PowerState.RUNNING: None,
    PowerState.STOPPED: "power_off",
    PowerState.PAUSED: "pause",
    PowerState.SUSPENDED: "suspend",
    PowerState.RESCUED: "rescue",
}


class CheckFailed(AssertionError):
    """The driver did not do what the contract says."""


class CheckSkipped(Exception):
    """The check does not apply (for example, it needs a second host)."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_error(
    error: type[exception.ComputedError],
    what: str,
    call: Callable[[], object],
    passes_through: Callable[[exception.ComputedError], bool] = lambda exc: False,
) -> exception.ComputedError:
    """The ``error`` that ``call()`` raises.

    :param passes_through: which other errors of the project are raised as
        they are, for the check to handle, rather than failing it.
    :raises CheckFailed: if ``call()`` succeeds or raises another error.
    """
    try:
        call()
    except error as exc:
        return exc
    except exception.ComputedError as exc:
        if passes_through(exc):
            raise
        raise CheckFailed(
            f"{what} raised {type(exc).__name__}, not {error.__name__}: {exc}"
        ) from None
    raise CheckFailed(f"{what} succeeded; expected {error.__name__}")


class SuiteContext:
    """Shared by every check of one run.

    :param network: a network of the hosts under test, for interfaces
        (``[conformance] network``).
    :param volume_path: a file on the hosts under test to attach as a
        ``file`` volume (``[conformance] volume_path``).
    :param image: the image root disks are made from (``[conformance] image``).
    :param volume_command: what makes a volume (``[conformance] volume_command``).
    :param volume_extend_command: what grows one (``[conformance] volume_extend_command``).
    :param hypervisor_command: what changes an instance behind its worker's back
        (``[conformance] hypervisor_command``).
    """

    def __init__(
        self,
        api: ComputeAPI,
        hosts: list[str],
        capabilities: HostCapabilities,
        notifications: NotificationCollector | None,
        notification_timeout: float,
        network: str = DEFAULT_NETWORK,
        volume_path: str = DEFAULT_VOLUME_PATH,
        image: str = DEFAULT_IMAGE,
        volume_command: str | None = None,
        volume_extend_command: str | None = None,
        hypervisor_command: str | None = None,
    ) -> None:
        self.api = api
        self.hosts = hosts
        self.host = hosts[0]
        self.capabilities = capabilities
        self.notifications = notifications
        self.notification_timeout = notification_timeout
        self.network = network
        self.volume_path = volume_path
        self.image = image
        self.volume_command = volume_command
        self.volume_extend_command = volume_extend_command
        self.hypervisor_command = hypervisor_command
        #: Whether the hosts change the devices of a running instance: None until
        #: a check finds out; False once the driver has refused, as the hypervisor's
        #: rule, a change that a stopped instance would allow (no hot-plug).
        self.live_device_changes: bool | None = None
        # Locally administered unicast MAC addresses (nova's fa:16:3e prefix),
        # one per interface of the run, from a random start so that runs differ.
        self._macs = itertools.count(random.randrange(1 << 23))

    def supports(self, operation: str) -> bool:
        """Whether the driver declares ``operation``; a feature (``reboot.soft``,
        ``spawn.volumes``) needs its operation too."""
        if operation in base.FEATURES:
            return (
                operation.split(".", 1)[0] in self.capabilities.operations
                and operation in self.capabilities.features
            )
        return operation in self.capabilities.operations

    def require(self, *operations: str) -> None:
        missing = [op for op in operations if not self.supports(op)]
        if missing:
            raise CheckSkipped(f"needs {', '.join(missing)}, which the driver declares unsupported")

    def require_notifications(self) -> NotificationCollector:
        if self.notifications is None:
            raise CheckSkipped("run without a notification listener")
        return self.notifications

    @staticmethod
    def spec(label: str, **fields: Any) -> InstanceSpec:
        values = {"uuid": str(uuidlib.uuid4()), "vcpus": 1, "memory_mb": 64, "disk_gb": 1, **fields}
        return InstanceSpec(name=f"conformance-{label}", **values)

    def volume(self, transport: str = "iscsi", size_gb: int | None = None) -> VolumeConnection:
        """A new volume's connection info: from :attr:`volume_command` when set, else
        ``iscsi`` or ``file`` (at :attr:`volume_path`)."""
        return new_volume(self.volume_command, transport, size_gb, self.volume_path)

    def grow_volume(self, volume: VolumeConnection, size_gb: int) -> None:
        """Grow ``volume`` to ``size_gb`` on its storage, as a storage service does
        before it calls extend_volume; nothing without :attr:`volume_extend_command`."""
        if self.volume_extend_command:
            _run(self.volume_extend_command, "volume_extend_command", volume.volume_id, size_gb)

    def behind_the_back(self, action: str, host: str, uuid: str) -> None:
        """Have the hypervisor ``stop`` or ``delete`` the instance without its worker.

        :raises CheckSkipped: without :attr:`hypervisor_command`.
        """
        if not self.hypervisor_command:
            raise CheckSkipped("needs [conformance] hypervisor_command")
        _run(self.hypervisor_command, "hypervisor_command", action, host, uuid)

    def vif(self, network: str | None = None, mac_address: str | None = None) -> NetworkInterface:
        """A new port on ``network`` (:attr:`network` by default), with a MAC address of its own."""
        if mac_address is None:
            value = next(self._macs) % (1 << 24)
            mac_address = "fa:16:3e:" + ":".join(f"{b:02x}" for b in value.to_bytes(3, "big"))
        return NetworkInterface(
            port_id=str(uuidlib.uuid4()),
            mac_address=mac_address,
            network=network or self.network,
        )

    def act(
        self, operation: str, uuid: str, host: str | None = None, **kwargs: Any
    ) -> InstanceInfo:
        """Run a transition by its TRANSITIONS name (``reboot.soft`` reboots softly)."""
        host = host or self.host
        if operation.startswith("reboot."):
            return self.api.reboot(None, host, uuid, operation.split(".", 1)[1], **kwargs)  # type: ignore[return-value]
        return getattr(self.api, operation)(None, host, uuid, **kwargs)  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def instance(
        self,
        label: str,
        state: str = PowerState.RUNNING,
        host: str | None = None,
        **fields: Any,
    ) -> Iterator[InstanceInfo]:
        """Spawn an instance (``fields`` for its spec), bring it to ``state``, and
        destroy it afterwards."""
        host = host or self.host
        if state == PowerState.RESCUED and "block_devices" not in fields:
            fields.setdefault("image", self.image)  # what the rescue boots by default
        step = REACH[state]
        self.require("spawn", "destroy", *([step] if step else []))
        spec = self.spec(label, **fields)
        info = self.api.spawn(None, host, spec)
        assert info is not None
        try:
            if step:
                info = self.act(step, spec.uuid, host)
                expect(
                    info.power_state == state,
                    f"{step} left the instance {info.power_state}, not {state}",
                )
            yield info
        finally:
            with contextlib.suppress(exception.ComputedError):
                self.api.destroy(None, host, spec.uuid)

    def cast_and_wait(self, operation: str, host: str, **kwargs: Any) -> tuple[str, str]:
        """Cast a lifecycle operation; return the end or error event type and request id."""
        event = self.cast(operation, host, **kwargs)
        return event.event_type, event.payload.request_id or ""

    def cast(self, operation: str, host: str, **kwargs: Any) -> Notification:
        """Cast an operation; return its end or error notification."""
        collector = self.require_notifications()
        ctxt = context.RequestContext()
        getattr(self.api, operation)(ctxt, host, cast=True, **kwargs)
        return collector.wait_for(
            lambda e: (
                e.payload.request_id == ctxt.request_id
                and e.event_type in (f"instance.{operation}.end", f"instance.{operation}.error")
            ),
            self.notification_timeout,
        )


def new_volume(
    command: str | None,
    transport: str = "iscsi",
    size_gb: int | None = None,
    volume_path: str = DEFAULT_VOLUME_PATH,
) -> VolumeConnection:
    """A new volume's connection info, as ``[conformance] volume_command`` makes it, or
    without one an ``iscsi`` target that need not exist, or a ``file`` at ``volume_path``.

    :raises CheckFailed: if the command fails or prints no connection info.
    """
    volume_id = str(uuidlib.uuid4())
    if command:
        return _provisioned(command, volume_id, size_gb or 1)
    if transport == "file":
        data: dict[str, Any] = {"device_path": volume_path}
    else:
        data = {
            "target_iqn": f"iqn.2010-10.org.computed:conformance-{volume_id[:8]}",
            "target_portal": "127.0.0.1:3260",
            "target_lun": 1,
            "target_discovered": False,
        }
    if size_gb is not None:
        data["size_gb"] = size_gb
    return VolumeConnection(volume_id=volume_id, driver_volume_type=transport, data=data)


def _provisioned(command: str, volume_id: str, size_gb: int) -> VolumeConnection:
    """The connection info ``command`` prints for a new volume.

    :raises CheckFailed: if the command fails or prints something else.
    """
    done = _run(command, "volume_command", volume_id, size_gb)
    try:
        info = json.loads(done.stdout)
        return VolumeConnection(
            volume_id=volume_id,
            driver_volume_type=info["driver_volume_type"],
            data=info.get("data", {}),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckFailed(
            f"volume_command printed no connection info ({exc}): {done.stdout[:200]!r}"
        ) from None


def _run(command: str, option: str, *arguments: object) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (the value of ``option``) with ``arguments``; its completed process.

    :raises CheckFailed: if it cannot run or exits non-zero.
    """
    try:
        done = subprocess.run(
            [*shlex.split(command), *map(str, arguments)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckFailed(f"{option} could not run: {exc}") from None
    if done.returncode != 0:
        raise CheckFailed(f"{option} exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    return done
