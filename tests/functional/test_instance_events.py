"""Changes on the hypervisor that no operation made reach the scheduler as events.

The fake hypervisor keeps its instances outside the worker (``[fake]
state_dir``); the test changes them there, as a guest shutting itself down
or an operator deleting a domain by hand would, and listens as a scheduler
does (``rpcapi.InstanceEventListener``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from oslo_config import cfg

from computed.objects import InstanceSpec, InstanceStatePayload
from drivers.fake._store import FileStore
from rpcapi import InstanceEvent, InstanceEventListener
from tests.functional.conftest import Deployment, wait_until


class _Events:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[InstanceEvent] = []

    def __call__(self, event: InstanceEvent) -> None:
        if isinstance(event.payload, InstanceStatePayload):
            with self._lock:
                self.events.append(event)

    def about(self, instance: str) -> list[tuple[str, str | None, str | None, str]]:
        with self._lock:
            return [
                (e.event_type, e.payload.old_state, e.payload.new_state, e.payload.source)
                for e in self.events
                if e.payload.uuid == instance
            ]


@pytest.fixture
def events(conf: cfg.ConfigOpts) -> Iterator[_Events]:
    heard = _Events()
    listener = InstanceEventListener(conf, heard, pool=f"events-{uuid.uuid4().hex[:6]}").start()
    yield heard
    listener.stop()


def test_changes_nobody_asked_for_are_published_once(
    deployment: Deployment, events: _Events
) -> None:
    host = f"oob-{uuid.uuid4().hex[:6]}"
    deployment.start_worker([host], f"oob-{host}", notifications={"instance_sync_interval": 0.5})
    api = deployment.api()
    ours, theirs, gone = (
        api.spawn(None, host, InstanceSpec(uuid=str(uuid.uuid4()), name=n, vcpus=1, memory_mb=64))
        for n in ("ours", "theirs", "gone")
    )
    assert ours is not None and theirs is not None and gone is not None
    hypervisor = FileStore(str(deployment.fake_state_dir))
    hypervisor.attach(host)

    api.power_off(None, host, ours.uuid)  # an operation: its outcome says so, no event
    with hypervisor.changing(host) as instances:  # the guest shuts itself down
        instances[theirs.uuid].power_state = "stopped"
    wait_until(lambda: bool(events.about(theirs.uuid)), 60, "the shutdown reported")
    assert events.about(theirs.uuid) == [
        ("instance.power_state.update", "running", "stopped", "poll")
    ]

    with hypervisor.changing(host) as instances:  # deleted by hand on the hypervisor
        del instances[gone.uuid]
    wait_until(lambda: bool(events.about(gone.uuid)), 60, "the deletion reported")
    assert events.about(gone.uuid) == [("instance.delete", "running", None, "poll")]

    # Both were seen by looks that also saw the power_off the worker made itself.
    assert events.about(ours.uuid) == []
    # Each change is published once, however many looks have passed since.
    api.power_on(None, host, ours.uuid)
    api.destroy(None, host, ours.uuid)
    with hypervisor.changing(host) as instances:
        instances[theirs.uuid].power_state = "running"
    wait_until(lambda: len(events.about(theirs.uuid)) == 2, 60, "the restart reported")
    assert events.about(theirs.uuid)[1] == (
        "instance.power_state.update",
        "stopped",
        "running",
        "poll",
    )
    assert events.about(ours.uuid) == [] and len(events.about(gone.uuid)) == 1
