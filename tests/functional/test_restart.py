"""Restarting a worker while a scheduler keeps calling and casting loses nothing.

The way an operator restarts a worker (``systemctl restart``, or the stop and
start of an upgrade): SIGTERM, then the same configuration again. The
scheduler neither pauses nor skips the host: calls sent while the worker
drains and restarts wait for it (``[client] handover_timeout``), casts wait in
the host's queue, and every one of them is served exactly once. The fake
hypervisor outlives its worker (``[fake] state_dir``), so every instance
spawned before the restart is still there after it.
"""

from __future__ import annotations

import collections
import time
import uuid
from typing import Any

import pytest
from oslo_context import context

from computed.objects import InstanceSpec
from computed.testing.notifications import NotificationCollector

from ._load import HostLoad
from .conftest import HANDOVER_TIMEOUT, Deployment, missing_instances


class _Scheduler(HostLoad):
    """One thread per host: ping, cast a spawn, call a spawn; any error is a failure."""

    def __init__(self, api: Any, hosts: list[str]) -> None:
        super().__init__(api, hosts, join_timeout=60)
        self.casts: list[str] = []
        #: (host, uuid) of every instance a call or an accepted cast spawned
        self.spawned: list[tuple[str, str]] = []
        self.calls = 0
        self.slowest = 0.0
        self.failures: list[str] = []

    def _run(self, host: str) -> None:
        api = self.api
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                api.ping(None, host)
                ctxt = context.RequestContext()
                cast = _spec("cast")
                api.spawn(ctxt, host, cast, cast=True)
                with self.lock:
                    self.casts.append(ctxt.request_id)
                    self.spawned.append((host, cast.uuid))
                call = api.spawn(None, host, _spec("call"))
                with self.lock:
                    self.spawned.append((host, call.uuid))
            except Exception as exc:  # noqa: BLE001 - reported by the test
                with self.lock:
                    self.failures.append(f"{host}: {type(exc).__name__}: {exc}")
            with self.lock:
                self.calls += 2
                self.slowest = max(self.slowest, time.monotonic() - started)
            self.stop.wait(0.05)


def _spec(name: str) -> InstanceSpec:
    return InstanceSpec(uuid=str(uuid.uuid4()), name=name, vcpus=1, memory_mb=64)


@pytest.mark.parametrize("same_id", [True, False], ids=["restart", "replacement"])
def test_restart_under_load_fails_no_call_and_loses_no_cast(
    deployment: Deployment, notifications: NotificationCollector, same_id: bool
) -> None:
    suffix = uuid.uuid4().hex[:6]
    hosts = [f"rs-{suffix}-{i}" for i in range(4)]
    worker = deployment.start_worker(hosts, "rs-1")
    scheduler = _Scheduler(deployment.api(), hosts)
    scheduler.start()
    try:
        time.sleep(1.5)
        stopping = time.monotonic()
        assert worker.terminate() == 0, worker.log()
        successor = deployment.start_worker(hosts, "rs-1" if same_id else "rs-2")
        gap = time.monotonic() - stopping
        time.sleep(1.5)
        with scheduler.lock:
            casts_before_end = len(scheduler.casts)
        time.sleep(1.0)
    finally:
        scheduler.finish()

    assert not scheduler.failures, scheduler.failures[:10]
    with scheduler.lock:
        assert len(scheduler.casts) > casts_before_end, "the scheduler stopped after the restart"
    sent = set(scheduler.casts)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not sent <= _ended(notifications):
        time.sleep(0.2)
    lost = sent - _ended(notifications)
    assert not lost, f"{len(lost)} of {len(sent)} casts had no outcome"
    ends = collections.Counter(
        e.payload.request_id for e in notifications.events if e.event_type == "instance.spawn.end"
    )
    assert all(ends[r] == 1 for r in sent), "a cast was served twice"
    assert scheduler.slowest < gap + HANDOVER_TIMEOUT, "a call waited past the handover"
    assert successor.poll() is None
    forgotten = missing_instances(deployment.api(), scheduler.spawned)
    assert not forgotten, f"{len(forgotten)} of {len(scheduler.spawned)} instances are gone"
    print(
        f"\nrestart: {gap:.1f} s from SIGTERM to the successor registered; "
        f"{scheduler.calls} calls, {len(sent)} casts, 0 failed, 0 lost; "
        f"{len(scheduler.spawned)} instances, all still there; "
        f"slowest round {scheduler.slowest:.1f} s"
    )


def _ended(notifications: NotificationCollector) -> set[str]:
    return {
        e.payload.request_id for e in notifications.events if e.event_type == "instance.spawn.end"
    }
