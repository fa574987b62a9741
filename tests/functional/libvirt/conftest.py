"""Fixtures for the libvirt driver's tests against a real, private libvirtd.

Needs libvirt-python and the libvirt daemon packages (``libvirt-daemon``,
``libvirt-daemon-driver-qemu``); the tests are skipped without them.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from oslo_config import cfg

from computed.objects import InstanceStatePayload
from computed.testing import libvirtd as libvirtd_mod
from computed.testing.libvirtd import Libvirtd
from rpcapi import InstanceEvent, InstanceEventListener
from tests.functional import _drivers

if TYPE_CHECKING:
    from drivers.libvirt.connection import LifecycleEvent
    from drivers.libvirt.driver import LibvirtDriver

#: The host the ``driver`` fixture serves.
HOST = "h1"

DriverFactory = Callable[..., "LibvirtDriver"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "libvirt: needs libvirtd and libvirt-python")
    config.addinivalue_line(
        "markers", "libvirt_guest: boots a real guest under qemu:///session (slow, needs qemu)"
    )


def need_libvirtd() -> None:
    pytest.importorskip("libvirt")
    try:
        libvirtd_mod.find_libvirtd()
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def daemon() -> Iterator[Libvirtd]:
    """One libvirtd for the module; ``uri_for()`` starts every test afresh (see ``virt``)."""
    need_libvirtd()
    with Libvirtd() as d:
        yield d


@pytest.fixture
def own_daemon() -> Iterator[Libvirtd]:
    """A libvirtd of the test's own, free to be stopped and restarted."""
    need_libvirtd()
    with Libvirtd() as d:
        yield d


@pytest.fixture
def virt(daemon: Libvirtd) -> Iterator[Any]:
    """An observer's own connection to ``test+unix:///default`` on the daemon.

    Every test starts with the node's one built-in domain, ``test``: what
    earlier tests left is removed first. (The node would reset by itself once
    its last connection closes, but the daemon notices a closed connection a
    little later, maybe after the next test has connected.)
    """
    libvirt = pytest.importorskip("libvirt")
    conn = libvirt.open(daemon.uri_for())
    try:
        for dom in conn.listAllDomains(0):
            if dom.name() == "test":
                continue
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        yield conn
    finally:
        conn.close()


def make_conf(uris: dict[str, str], **libvirt_opts: Any) -> cfg.ConfigOpts:
    """A configuration serving each host of ``uris`` through its URI."""
    from drivers.libvirt.driver import LibvirtDriver

    return _drivers.make_conf(LibvirtDriver, "libvirt", host_uris=uris, **libvirt_opts)


@pytest.fixture
def make_driver() -> Iterator[DriverFactory]:
    """``make_driver(uri, host=HOST, **libvirt_opts)``: a started driver, cleaned up after."""
    from drivers.libvirt.driver import LibvirtDriver

    def make(uri: str | dict[str, str], host: str = HOST, **libvirt_opts: Any) -> LibvirtDriver:
        uris = uri if isinstance(uri, dict) else {host: uri}
        return serve(LibvirtDriver(make_conf(uris, **libvirt_opts)), uris)

    with _drivers.serving() as serve:
        yield make


@pytest.fixture
def driver(daemon: Libvirtd, virt: Any, make_driver: DriverFactory) -> LibvirtDriver:
    """A driver serving host ``h1`` from the daemon's ``test+unix:///default``."""
    return make_driver(daemon.uri_for())


class Events:
    """Collects a driver's lifecycle events; :meth:`wait` for one to arrive."""

    def __init__(self) -> None:
        self.seen: list[LifecycleEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: LifecycleEvent) -> None:
        with self._cond:
            self.seen.append(event)
            self._cond.notify_all()

    def wait(self, uuid: str, event: str, timeout: float = 10) -> LifecycleEvent:
        def match() -> LifecycleEvent | None:
            return next((e for e in self.seen if e.uuid == uuid and e.event == event), None)

        with self._cond:
            if not self._cond.wait_for(lambda: match() is not None, timeout):
                raise AssertionError(
                    f"no {event} event for {uuid} within {timeout} s; saw {self.seen}"
                )
            found = match()
            assert found is not None
            return found


class StateEvents:
    """The instance events a scheduler hears; :meth:`wait` for those of one instance."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.heard: list[InstanceEvent] = []

    def __call__(self, event: InstanceEvent) -> None:
        if isinstance(event.payload, InstanceStatePayload):
            with self._cond:
                self.heard.append(event)
                self._cond.notify_all()

    def about(self, uuid: str) -> list[tuple[str, str | None, str | None, str]]:
        return [
            (e.event_type, e.payload.old_state, e.payload.new_state, e.payload.source)
            for e in self.heard
            if e.payload.uuid == uuid
        ]

    def wait(self, uuid: str, count: int, timeout: float = 30) -> list[Any]:
        with self._cond:
            arrived = self._cond.wait_for(lambda: len(self.about(uuid)) >= count, timeout)
            assert arrived, f"{count} events about {uuid} within {timeout} s; heard {self.heard}"
            return self.about(uuid)


@pytest.fixture
def state_events(conf: cfg.ConfigOpts) -> Iterator[StateEvents]:
    """The instance events a scheduler listening to the test broker hears."""
    heard = StateEvents()
    listener = InstanceEventListener(conf, heard, pool=f"events-{uuidlib.uuid4().hex[:6]}")
    listener.start()
    yield heard
    listener.stop()
