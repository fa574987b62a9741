"""Dead workers, draining workers, bad messages and unreachable brokers."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import kombu
import oslo_messaging as messaging
import pytest
from oslo_context import context

from computed import exception, rpc, version
from computed.objects import InstanceInfo, InstanceSpec
from computed.registry import Registry, WorkerRecord
from computed.testing.notifications import NotificationCollector
from computed.testing.workers import computed_command, console_command, write_config
from rpcapi import ComputeAPI

from .conftest import DOWN_TIME, Deployment, wait_until


def _ctl(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    config = write_config(
        str(deployment.workdir / "ctl.conf"),
        {"registry": {"connection": deployment.registry_url, "down_time": DOWN_TIME}},
    )
    command = console_command("computedctl")
    return subprocess.run(
        [*command, "--config-file", config, *args], capture_output=True, text=True, timeout=60
    )


def test_killed_worker_is_reported_down_and_its_hosts_fail_fast(deployment: Deployment) -> None:
    worker = deployment.start_worker(["h1"])
    api = deployment.api()
    api.ping(None, "h1")
    worker.kill()

    def reported_down() -> bool:
        listing = json.loads(_ctl(deployment, "workers", "--json").stdout)
        return [w["status"] for w in listing] == ["down"]

    wait_until(reported_down, DOWN_TIME * 5, "computedctl reporting w1 down", interval=0.2)
    deployment.conf.set_override("call_timeout", 600, group="client")
    try:
        with pytest.raises(exception.HostUnavailable, match=r"worker w1 is down, last heartbeat"):
            api.ping(None, "h1")
    finally:
        deployment.conf.set_override("call_timeout", 30, group="client")
    columns = ("host", "owner", "driver", "group", "rpc_version", "alive")
    shown = _ctl(
        deployment, "hosts", "-f", "value", *[a for c in columns for a in ("-c", c)]
    ).stdout
    assert shown.splitlines() == [f"h1 w1 fake fake {version.RPC_API_VERSION} False"]


def test_sigterm_lets_a_running_call_finish(
    deployment: Deployment, notifications: NotificationCollector, new_uuid: Callable[[], str]
) -> None:
    worker = deployment.start_worker(["h1"], fake={"spawn_delay": 3})
    api = deployment.api()
    ctxt = context.RequestContext()
    uuid = new_uuid()
    outcome: dict[str, Any] = {}

    def spawn() -> None:
        try:
            outcome["info"] = api.spawn(
                ctxt, "h1", InstanceSpec(uuid=uuid, name="slow", vcpus=1, memory_mb=64)
            )
        except Exception as exc:  # reported below
            outcome["error"] = exc

    caller = threading.Thread(target=spawn)
    caller.start()
    notifications.for_request(ctxt.request_id, "instance.spawn.start")
    assert worker.terminate() == 0
    caller.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert isinstance(outcome["info"], InstanceInfo) and outcome["info"].uuid == uuid
    notifications.for_request(ctxt.request_id, "instance.spawn.end")
    assert "Worker w1 stopped" in worker.log()
    assert Registry(deployment.registry_url).get("w1").state == "stopped"
    with pytest.raises(exception.HostUnavailable, match="worker w1 is stopped"):
        api._resolver.refresh()
        api.ping(None, "h1")


@pytest.fixture
def bare_client(deployment: Deployment) -> Any:
    """A plain oslo.messaging client that can send what rpcapi never would."""
    transport = rpc.get_transport(deployment.conf)
    client = messaging.get_rpc_client(
        transport,
        messaging.Target(topic=rpc.TOPIC, server="h1", version="1.0"),
        serializer=rpc.RequestContextSerializer(),
        timeout=20,
    )
    yield client
    transport.cleanup()


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _still_serving(deployment: Deployment) -> None:
    assert deployment.workers[0].poll() is None
    assert deployment.api().ping(None, "h1").host == "h1"


def test_message_that_is_not_json_is_dropped_with_a_log_line(deployment: Deployment) -> None:
    worker = deployment.start_worker(["h1"])
    with kombu.Connection(deployment.broker.amqp_url) as connection:
        producer = connection.Producer()
        producer.publish(
            b"{this is not json",
            exchange=kombu.Exchange("openstack", type="topic", durable=True),  # quorum queues
            routing_key="compute.h1",
            content_type="application/json",
            content_encoding="utf-8",
        )
    wait_until(
        lambda: "Refused on h1: a malformed message: not JSON" in worker.log(),
        30,
        "the worker logging the drop",
        interval=0.2,
    )
    _still_serving(deployment)


def test_unknown_method_gets_an_error_reply(deployment: Deployment, bare_client: Any) -> None:
    deployment.start_worker(["h1"])
    with pytest.raises(messaging.RemoteError) as caught:
        bare_client.call(context.RequestContext(), "format_disk")
    assert caught.value.exc_type == "NoSuchMethod"
    _still_serving(deployment)


def test_unsupported_version_gets_an_error_reply(deployment: Deployment, bare_client: Any) -> None:
    deployment.start_worker(["h1"])
    with pytest.raises(messaging.RemoteError) as caught:
        bare_client.prepare(version="1.99").call(context.RequestContext(), "ping")
    assert caught.value.exc_type == "UnsupportedVersion"
    _still_serving(deployment)


@pytest.mark.parametrize(
    ("method", "kwargs", "complaint"),
    [
        ("get_info", {"uuid": 42}, "uuid must be a UUID string"),
        ("get_info", {}, "missing a required argument: 'uuid'"),
        ("power_on", {"uuid": "4f6b7f57-5c2b-4e7b-a4a2-8c8a8e1e0c11", "force": True}, "force"),
        ("spawn", {"instance": "a string"}, "instance must be an InstanceSpec"),
        (
            "spawn",
            {
                "instance": {
                    "computed_object.name": "InstanceSpec",
                    "computed_object.version": "1.0",
                    "computed_object.namespace": "computed",
                    "computed_object.data": {"vcpus": "lots"},
                }
            },
            "malformed versioned object",
        ),
        ("get_info", {"uuid": "x" * (8 * 1024 * 1024)}, "over the worker's limit"),
        (
            "spawn",
            {
                "instance": InstanceSpec(
                    uuid="4f6b7f57-5c2b-4e7b-a4a2-8c8a8e1e0c11",
                    name="n" * 4_000_000,
                    vcpus=1,
                    memory_mb=64,
                )
            },
            "over the worker's limit",
        ),
        (
            "spawn",
            {
                "instance": InstanceSpec(
                    uuid="4f6b7f57-5c2b-4e7b-a4a2-8c8a8e1e0c11",
                    name="n" * 4_000,
                    vcpus=1,
                    memory_mb=64,
                )
            },
            "name must be 1 to 255",
        ),
        ("get_info", {"uuid": "4f6b7f57-5c2b-4e7b-a4a2-8c8a8e1e0c11\ud800"}, "lone surrogate"),
        ("get_info", {"uuid": _nested(40)}, "nested deeper"),
    ],
    ids=[
        "wrong-type",
        "missing-arg",
        "unknown-arg",
        "not-an-object",
        "corrupt-object",
        "8MiB-string",
        "4MB-name",
        "4kB-name",
        "lone-surrogate",
        "deep-nesting",
    ],
)
def test_bad_arguments_get_an_invalid_request_reply(
    deployment: Deployment, bare_client: Any, method: str, kwargs: dict[str, Any], complaint: str
) -> None:
    deployment.start_worker(["h1"])
    with pytest.raises(exception.InvalidRequest) as caught:
        bare_client.call(context.RequestContext(), method, **kwargs)
    assert complaint in str(caught.value)
    _still_serving(deployment)


def test_refused_casts_leave_no_journal_entry_behind(
    deployment: Deployment, bare_client: Any, notifications: NotificationCollector
) -> None:
    """A lifecycle cast is journaled on receipt; one that is refused must not stay there."""
    worker = deployment.start_worker(["h1"])
    uuid = "4f6b7f57-5c2b-4e7b-a4a2-8c8a8e1e0c11"
    refused = [
        ("power_on", {"uuid": uuid, "force": True}),  # an argument 1.0 does not have
        ("reboot", {"uuid": uuid, "reboot_type": "sideways"}),
        ("destroy", {"uuid": uuid}, "1.99"),  # a version nobody serves
        ("suspend", {"uuid": uuid}),  # no such instance
    ]
    for method, kwargs, *at in refused:
        client = bare_client.prepare(version=at[0]) if at else bare_client
        client.cast(context.RequestContext(), method, **kwargs)
    ctxt = context.RequestContext()
    spec = InstanceSpec(uuid=str(uuid4()), name="after", vcpus=1, memory_mb=64)
    deployment.api().spawn(ctxt, "h1", spec, cast=True)
    notifications.for_request(ctxt.request_id, "instance.spawn.end")  # served in order, after
    registry = Registry(deployment.registry_url)
    wait_until(lambda: registry.journal_entries() == [], 10, "the journal emptying", interval=0.2)
    registry.close()
    assert worker.log().count("Refused on h1") == 3  # refused before the journal
    _still_serving(deployment)


def test_client_with_unreachable_broker_fails_in_bounded_time(deployment: Deployment) -> None:
    registry = Registry(deployment.registry_url)
    registry.migrate()
    registry.register(
        WorkerRecord(
            id="w9",
            driver="fake",
            hosts=("h1",),
            rpc_version="1.0",
            rpc_min_version="1.0",
            support_tier="conformant",
        )
    )
    conf = deployment.conf
    closed_port = deployment.broker.url.replace(f":{deployment.broker.port}/", ":1/")
    conf.set_override("transport_url", closed_port)
    conf.set_override("broker_connect_timeout", 1.0)
    try:
        api = ComputeAPI(conf, registry=registry)
        with pytest.raises(exception.BrokerUnavailable) as caught:
            api.ping(None, "h1")
    finally:
        conf.set_override("transport_url", deployment.broker.url)
        conf.clear_override("broker_connect_timeout")
    assert "127.0.0.1:1" in str(caught.value)
    assert "guest:guest" not in str(caught.value)


def _run_worker(deployment: Deployment, **overrides: Any) -> subprocess.CompletedProcess[str]:
    options = deployment.worker_options(["h1"], "w1")
    options["DEFAULT"].update(overrides)
    config = write_config(str(deployment.workdir / "bad.conf"), options)
    return subprocess.run(
        [*computed_command(), "--config-file", config], capture_output=True, text=True, timeout=120
    )


def test_worker_exits_when_the_broker_is_unreachable(deployment: Deployment) -> None:
    closed_port = deployment.broker.url.replace(f":{deployment.broker.port}/", ":1/")
    result = _run_worker(deployment, transport_url=closed_port, broker_connect_timeout=1)
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "computed: error: Cannot reach the message broker at rabbit://guest@127.0.0.1:1/"
    )


def test_worker_exits_when_the_driver_cannot_load(deployment: Deployment) -> None:
    result = _run_worker(deployment, driver="no-such-driver")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "computed: error: Cannot load driver 'no-such-driver': no such driver; installed drivers: "
        + ", ".join(__import__("computed.driver_loader").driver_loader.available_drivers())
    )


def test_computedctl_lists_live_workers(deployment: Deployment) -> None:
    deployment.start_worker(["h1", "h2"])
    listing = json.loads(_ctl(deployment, "workers", "--json").stdout)
    assert [(w["id"], w["status"], w["hosts"], w["rpc_version"]) for w in listing] == [
        ("w1", "up", ["h1", "h2"], version.RPC_API_VERSION)
    ]
    hosts = json.loads(_ctl(deployment, "hosts", "--json").stdout)
    assert [(h["host"], h["alive"]) for h in hosts] == [("h1", True), ("h2", True)]
