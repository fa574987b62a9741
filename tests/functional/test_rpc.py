"""Calls and casts through rpcapi, a real broker and a real worker process."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from oslo_context import context

from computed import exception
from computed.objects import InstanceSpec
from computed.testing.notifications import NotificationCollector

from .conftest import Deployment


def _spec(uuid: str, name: str = "vm") -> InstanceSpec:
    return InstanceSpec(uuid=uuid, name=name, vcpus=2, memory_mb=256, disk_gb=10)


def test_every_operation_as_a_call(deployment: Deployment, new_uuid: Callable[[], str]) -> None:
    deployment.start_worker(["h1", "h2"])
    api = deployment.api()
    uuid = new_uuid()

    assert api.ping(None, "h2").worker_id == "w1"
    assert api.spawn(None, "h1", _spec(uuid)).power_state == "running"
    assert api.spawn(None, "h1", _spec(uuid)).uuid == uuid  # idempotent
    assert [i.uuid for i in api.list_instances(None, "h1")] == [uuid]
    assert api.list_instances(None, "h2") == []
    steps = [
        (api.reboot, ("soft",), "running"),
        (api.reboot, ("hard",), "running"),
        (api.pause, (), "paused"),
        (api.unpause, (), "running"),
        (api.suspend, (), "suspended"),
        (api.resume, (), "running"),
        (api.power_off, (), "stopped"),
        (api.power_off, (), "stopped"),  # idempotent
        (api.power_on, (), "running"),
    ]
    for method, extra, state in steps:
        assert method(None, "h1", uuid, *extra).power_state == state, method.__name__
    assert api.get_info(None, "h1", uuid).power_state == "running"
    resources = api.get_host_resources(None, "h1")
    assert (resources.instances, resources.vcpus_used, resources.disk_gb_used) == (1, 2, 10)
    capabilities = api.get_capabilities(None, "h1")
    assert capabilities.driver == "fake" and "suspend" in capabilities.operations
    api.destroy(None, "h1", uuid)
    api.destroy(None, "h1", uuid)  # a missing instance is not an error
    with pytest.raises(exception.InstanceNotFound) as caught:
        api.get_info(None, "h1", uuid)
    assert caught.value.kwargs == {"uuid": uuid, "host": "h1"}


def test_errors_arrive_as_project_exceptions(
    deployment: Deployment, new_uuid: Callable[[], str]
) -> None:
    deployment.start_worker(["h1"])
    api = deployment.api()
    uuid = new_uuid()
    api.spawn(None, "h1", _spec(uuid))
    api.power_off(None, "h1", uuid)
    with pytest.raises(exception.InvalidPowerState) as caught:
        api.pause(None, "h1", uuid)
    assert type(caught.value) is exception.InvalidPowerState
    assert caught.value.kwargs["state"] == "stopped"
    assert "Traceback" not in str(caught.value)
    with pytest.raises(exception.InvalidRequest, match="reboot_type"):
        api.reboot(None, "h1", uuid, "sideways")


def test_casts_report_their_outcome(
    deployment: Deployment, notifications: NotificationCollector, new_uuid: Callable[[], str]
) -> None:
    deployment.start_worker(["h1"])
    api = deployment.api()
    uuid = new_uuid()

    ctxt = context.RequestContext()
    assert api.spawn(ctxt, "h1", _spec(uuid), cast=True) is None
    start = notifications.for_request(ctxt.request_id, "instance.spawn.start")
    end = notifications.for_request(ctxt.request_id, "instance.spawn.end")
    assert (start.payload.uuid, end.payload.uuid) == (uuid, uuid)
    assert end.payload.power_state == "running"
    assert end.publisher_id == "computed.h1"

    for operation, state in [("pause", "paused"), ("unpause", "running"), ("power_off", "stopped")]:
        ctxt = context.RequestContext()
        getattr(api, operation)(ctxt, "h1", uuid, cast=True)
        done = notifications.for_request(ctxt.request_id, f"instance.{operation}.end")
        assert done.payload.power_state == state

    ctxt = context.RequestContext()
    api.suspend(ctxt, "h1", uuid, cast=True)  # not allowed from stopped
    failed = notifications.for_request(ctxt.request_id, "instance.suspend.error")
    assert failed.payload.error_class == "InvalidPowerState"
    assert failed.payload.error_kwargs["state"] == "stopped"
    assert api.get_info(None, "h1", uuid).power_state == "stopped"

    ctxt = context.RequestContext()
    api.destroy(ctxt, "h1", uuid, cast=True)
    notifications.for_request(ctxt.request_id, "instance.destroy.end")
    assert api.list_instances(None, "h1") == []


def test_unknown_host_fails_at_once(deployment: Deployment) -> None:
    deployment.start_worker(["h1"])
    api = deployment.api()
    deployment.conf.set_override("call_timeout", 600, group="client")
    try:
        with pytest.raises(exception.HostUnavailable) as caught:
            api.ping(None, "nowhere")
    finally:
        deployment.conf.set_override("call_timeout", 30, group="client")
    assert caught.value.kwargs == {"host": "nowhere", "reason": "no worker has registered it"}


def test_disabled_worker_takes_no_calls(deployment: Deployment) -> None:
    deployment.start_worker(["h1"])
    api = deployment.api()
    api.ping(None, "h1")
    api._registry.set_disabled("w1", True, "firmware upgrade")
    api._resolver.refresh()
    with pytest.raises(exception.HostUnavailable, match="disabled: firmware upgrade"):
        api.ping(None, "h1")


def test_start_notifications_can_be_left_out(
    deployment: Deployment, notifications: NotificationCollector, new_uuid: Callable[[], str]
) -> None:
    deployment.start_worker(["h1"], notifications={"phases": ["end", "error"]})
    api = deployment.api()
    ctxt = context.RequestContext()
    api.spawn(ctxt, "h1", _spec(new_uuid()), cast=True)
    notifications.for_request(ctxt.request_id, "instance.spawn.end")
    sent = [e.event_type for e in notifications.events if e.payload.request_id == ctxt.request_id]
    assert sent == ["instance.spawn.end"]
