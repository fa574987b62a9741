"""The scheduler's event listener (rpcapi.InstanceEventListener) on a real broker and worker."""

from __future__ import annotations

import collections
import json
import threading
import uuid
from collections.abc import Iterator

import kombu
import pytest
from oslo_config import cfg
from oslo_context import context

from computed.notifications import NotificationPublisher
from computed.objects import InstanceActionPayload, InstanceSpec
from computed.testing.broker import RabbitMQBroker
from computed.testing.proxy import SilentPort
from rpcapi import InstanceEvent, InstanceEventListener
from tests.functional.conftest import Deployment, wait_until


class _Heard:
    """What one listener's callback was given, by event type and request id."""

    def __init__(self) -> None:
        self.events: list[InstanceEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: InstanceEvent) -> None:
        with self._lock:
            self.events.append(event)

    def requests(self, event_type: str) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(
                e.payload.request_id for e in self.events if e.event_type == event_type
            )


@pytest.fixture
def listen(conf: cfg.ConfigOpts) -> Iterator[collections.abc.Callable[[str], _Heard]]:
    listeners: list[InstanceEventListener] = []

    def start(pool: str) -> _Heard:
        heard = _Heard()
        listeners.append(InstanceEventListener(conf, heard, pool=pool).start())
        return heard

    yield start
    for listener in listeners:
        listener.stop()


def test_each_pool_hears_every_outcome_once(
    deployment: Deployment, listen: collections.abc.Callable[[str], _Heard]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    host = f"ev-{suffix}"
    deployment.start_worker([host], f"ev-{suffix}")
    # Two scheduler processes of one service, and an audit service.
    first, second = listen(f"scheduler-{suffix}"), listen(f"scheduler-{suffix}")
    audit = listen(f"audit-{suffix}")
    api = deployment.api()
    requests = []
    for _ in range(20):
        ctxt = context.RequestContext()
        spec = InstanceSpec(uuid=str(uuid.uuid4()), name="ev", vcpus=1, memory_mb=64)
        api.spawn(ctxt, host, spec, cast=True)
        requests.append(ctxt.request_id)

    def heard_all() -> bool:
        shared = first.requests("instance.spawn.end") + second.requests("instance.spawn.end")
        return set(shared) >= set(requests) and set(audit.requests("instance.spawn.end")) >= set(
            requests
        )

    wait_until(heard_all, 60, "every spawn's end heard by both services")
    shared = first.requests("instance.spawn.end") + second.requests("instance.spawn.end")
    assert all(shared[r] == 1 for r in requests), shared
    assert all(audit.requests("instance.spawn.end")[r] == 1 for r in requests)
    event = next(e for e in audit.events if e.event_type == "instance.spawn.end")
    assert isinstance(event.payload, InstanceActionPayload)
    assert (event.host, event.priority) == (host, "info") and event.message_id


def test_a_notification_published_twice_is_heard_once(
    conf: cfg.ConfigOpts, listen: collections.abc.Callable[[str], _Heard]
) -> None:
    heard = listen(f"dup-{uuid.uuid4().hex[:6]}")
    publisher = NotificationPublisher(conf, "dup-test")
    payloads = {}
    try:
        for name in ("twice", "after"):
            payload = InstanceActionPayload(
                uuid=str(uuid.uuid4()),
                host="dup-host",
                operation="reboot",
                phase="end",
                request_id=f"req-{name}",
            )
            payloads[name] = payload.obj_to_primitive()
        message_id = str(uuid.uuid4())
        for _ in range(2):  # as a new owner republishes a recorded outcome
            publisher.publish(
                {}, "compute.dup-host", "instance.reboot.end", "INFO", payloads["twice"], message_id
            )
        publisher.publish(
            {},
            "compute.dup-host",
            "instance.reboot.end",
            "INFO",
            payloads["after"],
            str(uuid.uuid4()),
        )
    finally:
        publisher.close()
    wait_until(lambda: heard.requests("instance.reboot.end")["req-after"] == 1, 30, "heard")
    assert heard.requests("instance.reboot.end")["req-twice"] == 1


def test_a_start_lost_with_its_connection_goes_out_again_before_the_outcome(
    broker: RabbitMQBroker, conf: cfg.ConfigOpts
) -> None:
    """An operation's start is published without waiting for the broker's
    confirmation. Written on a connection that failed before the broker got it,
    it is published again on the next connection, ahead of the outcome."""
    topic = f"resend-{uuid.uuid4().hex[:6]}"
    conf.set_override("topic", topic, group="notifications")
    port = SilentPort(broker.port)
    port.forward()
    publisher = NotificationPublisher(conf, "resend-test", url=port.url)
    try:
        publisher.publish({}, "computed.h", "instance.spawn.end", "info", {"n": 0})
        port.silence()  # the broker's side closes; what the publisher writes is dropped
        publisher.publish({}, "computed.h", "instance.reboot.start", "info", {"n": 1}, wait=False)
        port.forward()  # resets the publisher's connection
        publisher.publish({}, "computed.h", "instance.reboot.end", "info", {"n": 2})
        assert publisher.reconnects == 1
    finally:
        publisher.close()
        port.close()
        conf.clear_override("topic", group="notifications")
    assert _queued(broker, f"{topic}.info") == [
        ("instance.spawn.end", 0),
        ("instance.reboot.start", 1),
        ("instance.reboot.end", 2),
    ]


def _queued(broker: RabbitMQBroker, queue: str) -> list[tuple[str, object]]:
    """The event type and payload of each notification in ``queue``, in order (taken out)."""
    found = []
    with kombu.Connection(broker.amqp_url) as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            inner = json.loads(json.loads(message.body)["oslo.message"])
            found.append((inner["event_type"], inner["payload"]["n"]))
    return found


def test_events_are_heard_on_each_driver_types_broker(
    broker: RabbitMQBroker,
    conf: cfg.ConfigOpts,
    deployment: Deployment,
    listen: collections.abc.Callable[[str], _Heard],
) -> None:
    suffix = uuid.uuid4().hex[:6]
    vhost = f"events-{suffix}"
    broker.add_vhost(vhost)
    broker.set_permissions(vhost, "guest")
    host = f"ev-vhost-{suffix}"
    deployment.start_worker(
        [host], f"ev-vhost-{suffix}", DEFAULT={"transport_url": broker.url_for(vhost)}
    )
    conf.set_override("driver_transport_url", [f"fake={broker.url_for(vhost)}"], group="client")
    try:
        heard = listen(f"scheduler-{suffix}")
        ctxt = context.RequestContext()
        spec = InstanceSpec(uuid=str(uuid.uuid4()), name="ev", vcpus=1, memory_mb=64)
        deployment.api().spawn(ctxt, host, spec, cast=True)
        wait_until(
            lambda: heard.requests("instance.spawn.end")[ctxt.request_id] == 1,
            60,
            "the spawn's end heard from the driver type's vhost",
        )
    finally:
        conf.clear_override("driver_transport_url", group="client")
