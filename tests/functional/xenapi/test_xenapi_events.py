"""xapi's VM events: ``watch_instances`` against the xapi test server, and through a worker.

Another XenAPI session changes VMs behind the driver's back, as an operator
with ``xe`` or a guest shutting itself down would; the driver must report
exactly those instances, from ``event.from`` alone.
"""

from __future__ import annotations

import queue
import threading
import uuid as uuidlib
from typing import Any

import pytest

from computed.objects import InstanceSpec, InstanceStatePayload
from rpcapi import InstanceEvent, InstanceEventListener
from tests.functional import _drivers
from tests.functional._drivers import new_spec
from tests.functional.xenapi.conftest import (
    HOST,
    PASSWORD,
    POOL,
    USER,
    DriverFactory,
    make_server,
)
from tests.xapiserver import XapiTestServer
from tests.xapiserver import vmops as server_vmops

XenAPI = pytest.importorskip("XenAPI")

from drivers.xenapi.driver import XenAPIDriver  # noqa: E402
from tests.functional.xenapi.test_xenapi_driver import vm_of  # noqa: E402

pytestmark = pytest.mark.xenapi

#: Seconds to wait for a report that should come (a failing test waits this long).
WAIT = 30


class Reports:
    """What ``changed`` was called with, in order; ``marker`` is an instance the
    watcher knew from the start, which :func:`settle` changes."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.queue: queue.Queue[str] = queue.Queue()

    def __call__(self, uuid: str) -> None:
        self.queue.put(uuid)

    def next(self) -> str:
        return self.queue.get(timeout=WAIT)


def watch(driver: XenAPIDriver, host: str = HOST) -> Reports:
    """The driver watching ``host``, which has a marker instance."""
    marker = new_spec("marker")
    driver.spawn(host, marker)
    reports = Reports(marker.uuid)
    driver.watch_instances(host, reports)
    return reports


@pytest.fixture
def watched(driver: XenAPIDriver) -> Reports:
    return watch(driver)


def settle(xapi: Any, reports: Reports) -> None:
    """Take every report of what happened so far.

    The marker is paused (or unpaused) twice, each time once the watcher has
    reported the time before: a batch of events may report the marker before
    other changes of that batch, but the second change comes in a later
    batch, after all of those.
    """
    vm = vm_of(xapi, reports.marker)
    for _ in range(2):
        if xapi.VM.get_power_state(vm) == "Paused":
            xapi.VM.unpause(vm)
        else:
            xapi.VM.pause(vm)
        while reports.next() != reports.marker:
            pass


def test_changes_behind_the_drivers_back_are_reported(
    driver: XenAPIDriver, xapi: Any, watched: Reports
) -> None:
    paused, gone, quiet = new_spec("paused"), new_spec("gone"), new_spec("quiet")
    for spec in (paused, gone, quiet):
        driver.spawn(HOST, spec)
    settle(xapi, watched)
    xapi.VM.pause(vm_of(xapi, paused.uuid))
    assert watched.next() == paused.uuid
    vm = vm_of(xapi, gone.uuid)
    xapi.VM.hard_shutdown(vm)
    assert watched.next() == gone.uuid
    xapi.VM.destroy(vm)
    assert watched.next() == gone.uuid
    xapi.VM.set_name_description(vm_of(xapi, quiet.uuid), "renamed")  # no state change
    settle(xapi, watched)
    assert watched.queue.empty()


def test_other_hosts_and_foreign_vms_are_not_reported(
    server: XapiTestServer, make_driver: DriverFactory, xapi: Any
) -> None:
    driver = make_driver(server.url, hosts={HOST: f"{POOL}/xs-a", "other": f"{POOL}/xs-b"})
    reports = watch(driver)
    theirs = new_spec("theirs")
    driver.spawn("other", theirs)
    template = xapi.VM.get_by_name_label("Other install media")[0]
    foreign = xapi.VM.clone(template, "someone else's")
    xapi.VM.provision(foreign)
    xapi.VM.set_is_a_template(foreign, False)
    xapi.VM.start(foreign, False, False)
    xapi.VM.pause(vm_of(xapi, theirs.uuid))
    settle(xapi, reports)
    assert reports.queue.empty()


def test_rescue_is_a_change_of_state(driver: XenAPIDriver, xapi: Any, watched: Reports) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    settle(xapi, watched)
    driver.rescue(HOST, spec.uuid, None)
    assert watched.next() == spec.uuid  # halted, then rescued


def test_the_watcher_outlives_a_lost_session(
    driver: XenAPIDriver, xapi: Any, server: XapiTestServer, watched: Reports
) -> None:
    spec = new_spec()
    driver.spawn(HOST, spec)
    settle(xapi, watched)
    server.expire_sessions()  # the waiting event.from answers SESSION_INVALID
    xapi.VM.pause(vm_of(xapi, spec.uuid))
    assert watched.next() == spec.uuid


def test_what_changed_while_the_pool_was_away_is_reported(
    make_driver: DriverFactory, closed_port: int
) -> None:
    """The pool master goes away (its connections cut) and comes back with a VM
    gone meanwhile: the watcher reads every VM again and reports the lost one."""
    srv = make_server(port=closed_port).start()
    try:
        driver = make_driver(srv.url)
        kept, gone = new_spec("kept"), new_spec("gone")
        for spec in (kept, gone):
            driver.spawn(HOST, spec)
        reports = watch(driver)
        srv.stop()
        pool = srv.pool()
        with pool.lock:  # destroyed through another host of the pool meanwhile
            (vm,) = [r for r, v in pool.items("VM") if v["name_label"].endswith(gone.uuid)]
            server_vmops.halt(pool, vm, pool.get("VM", vm))
            server_vmops.destroy(pool, vm, pool.get("VM", vm))
        srv.start()  # the same pool: its sessions, objects and tokens
        assert reports.next() == gone.uuid
        assert driver.get_info(HOST, kept.uuid).power_state == "running"
        assert reports.queue.empty()  # nothing else changed
    finally:
        srv.stop()


def test_cleanup_stops_the_watcher_and_logs_it_out(
    server: XapiTestServer, make_driver: DriverFactory, xapi: Any
) -> None:
    driver = make_driver(server.url)
    watch(driver)  # which logs the watcher in before it returns
    pool = server.pool()
    assert sorted(s.originator for s in pool.sessions.values()) == [
        "computed",
        "computed",  # the driver's, and the watcher's own
        "observer",
    ]
    driver.cleanup_host(HOST)
    assert [s.originator for s in pool.sessions.values()] == ["observer"]
    assert not [t for t in threading.enumerate() if t.name == f"xapi-events-{HOST}"]


# Through a worker -----------------------------------------------------------------


class _Heard:
    def __init__(self) -> None:
        self.queue: queue.Queue[InstanceEvent] = queue.Queue()

    def __call__(self, event: InstanceEvent) -> None:
        if isinstance(event.payload, InstanceStatePayload):
            self.queue.put(event)

    def next(self) -> tuple[str, str, str | None, str | None, str]:
        event = self.queue.get(timeout=60)
        payload = event.payload
        return (
            event.event_type,
            payload.uuid,
            payload.old_state,
            payload.new_state,
            payload.source,
        )


@pytest.mark.functional
def test_worker_publishes_what_xapi_reports(deployment: Any, conf: Any) -> None:
    xapi_host = "xs1"
    pool = f"{POOL}:{USER}:{PASSWORD}:{xapi_host}"
    with _drivers.server_process("tests.xapiserver", "--port", "0", "--pool", pool) as line:
        url = dict(item.split("=", 1) for item in line.split()[1:])[POOL]
        heard = _Heard()
        listener = InstanceEventListener(conf, heard, pool=f"xen-{uuidlib.uuid4().hex[:6]}")
        listener.start()
        try:
            deployment.start_worker(
                [HOST],
                DEFAULT={"driver": "xenapi"},
                xenapi={
                    "pool_urls": {POOL: url},
                    "hosts": {HOST: f"{POOL}/{xapi_host}"},
                    "username": USER,
                    "password": PASSWORD,
                },
                # No periodic look: only xapi's events can tell the worker.
                notifications={"instance_sync_interval": 0},
            )
            api = deployment.api()
            paused, gone = (
                api.spawn(
                    None,
                    HOST,
                    InstanceSpec(uuid=str(uuidlib.uuid4()), name=n, vcpus=1, memory_mb=256),
                )
                for n in ("paused", "gone")
            )
            observer = XenAPI.Session(url)
            observer.xenapi.login_with_password(USER, PASSWORD, "2.21", "observer")
            x = observer.xenapi
            x.VM.pause(vm_of(x, paused.uuid))
            assert heard.next() == (
                "instance.power_state.update",
                paused.uuid,
                "running",
                "paused",
                "hypervisor",
            )
            vm = vm_of(x, gone.uuid)
            x.VM.hard_shutdown(vm)
            assert heard.next()[1:] == (gone.uuid, "running", "stopped", "hypervisor")
            x.VM.destroy(vm)
            assert heard.next() == ("instance.delete", gone.uuid, "stopped", None, "hypervisor")
        finally:
            listener.stop()
