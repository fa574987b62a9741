"""Snapshots over the bus: a long call, its progress, and its repeat by a worker's successor."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from oslo_context import context

from computed.objects import InstanceSpec, PowerState
from computed.testing.notifications import Notification, NotificationCollector

from .conftest import Deployment, wait_until

#: The client's call timeout in these tests, in seconds: a snapshot takes
#: several times as long, so only the worker's heartbeats keep the call open.
CALL_TIMEOUT = 2
#: What a fake snapshot takes, in seconds (its progress is reported in quarters).
SNAPSHOT_DELAY = 4 * CALL_TIMEOUT


@pytest.fixture
def short_calls(deployment: Deployment) -> Iterator[None]:
    deployment.conf.set_override("call_timeout", CALL_TIMEOUT, group="client")
    yield
    deployment.conf.clear_override("call_timeout", group="client")


def _spec(uuid: str) -> InstanceSpec:
    return InstanceSpec(uuid=uuid, name="vm", vcpus=1, memory_mb=64, image="cirros", disk_gb=1)


def _of_request(
    notifications: NotificationCollector, request_id: str, phase: str
) -> list[Notification]:
    return [
        e
        for e in notifications.events
        if e.payload.request_id == request_id and e.event_type == f"instance.snapshot.{phase}"
    ]


def test_a_snapshot_outlasting_the_call_timeout_returns_its_image_with_its_progress(
    deployment: Deployment,
    notifications: NotificationCollector,
    new_uuid: Callable[[], str],
    short_calls: None,
) -> None:
    deployment.start_worker(["h1"], fake={"snapshot_delay": SNAPSHOT_DELAY})
    api = deployment.api()
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))
    ctxt = context.RequestContext()

    image = api.snapshot(ctxt, "h1", uuid, "nightly")

    assert image is not None and (image.name, image.instance_uuid) == ("nightly", uuid)
    end = notifications.for_request(ctxt.request_id, "instance.snapshot.end", 30)
    assert end.payload.image == image
    progress = [e.payload.progress for e in _of_request(notifications, ctxt.request_id, "progress")]
    assert progress == [0, 25, 50, 75, 100]
    assert api.get_info(None, "h1", uuid).power_state == PowerState.RUNNING
    # Taken once per name: asked again, the host returns the image it has, at once.
    again = context.RequestContext()
    assert api.snapshot(again, "h1", uuid, "nightly") == image
    notifications.for_request(again.request_id, "instance.snapshot.end", 30)
    assert [
        e.payload.progress for e in _of_request(notifications, again.request_id, "progress")
    ] == [100]


def test_a_snapshot_cut_short_by_a_dead_worker_is_taken_by_its_successor(
    deployment: Deployment,
    notifications: NotificationCollector,
    new_uuid: Callable[[], str],
) -> None:
    first = deployment.start_worker(["h1"], "w1", fake={"snapshot_delay": SNAPSHOT_DELAY})
    api = deployment.api()
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))
    ctxt = context.RequestContext()
    api.snapshot(ctxt, "h1", uuid, "before-upgrade", cast=True)
    # Killed once the copy is under way: the journal holds the snapshot as started.
    wait_until(
        lambda: any(
            e.payload.progress == 25
            for e in _of_request(notifications, ctxt.request_id, "progress")
        ),
        30,
        "the snapshot's progress",
    )
    first.kill()
    deployment.start_worker(["h1"], "w2", fake={"snapshot_delay": 0})

    end = notifications.for_request(ctxt.request_id, "instance.snapshot.end", 60)

    assert end.publisher_id == "computed.h1"
    image = end.payload.image
    assert image is not None and (image.name, image.instance_uuid) == ("before-upgrade", uuid)
    state = json.loads((deployment.fake_state_dir / "h1.json").read_text())
    assert [i["name"] for i in state["images"].values()] == ["before-upgrade"]
    assert api.snapshot(None, "h1", uuid, "before-upgrade") == image
