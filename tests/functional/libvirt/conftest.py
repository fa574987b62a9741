"""Fixtures for the libvirt driver's tests against a real, private libvirtd.

Needs libvirt-python and the libvirt daemon packages (``libvirt-daemon``,
``libvirt-daemon-driver-qemu``); the tests are skipped without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from oslo_config import cfg

from computed.testing import libvirtd as libvirtd_mod
from computed.testing.libvirtd import Libvirtd

if TYPE_CHECKING:
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

    conf = cfg.ConfigOpts()
    LibvirtDriver.register_opts(conf)
    conf([])
    conf.set_override("host_uris", uris, "libvirt")
    for name, value in libvirt_opts.items():
        conf.set_override(name, value, "libvirt")
    return conf


@pytest.fixture
def make_driver() -> Iterator[DriverFactory]:
    """``make_driver(uri, host=HOST, **libvirt_opts)``: a started driver, cleaned up after."""
    started: list[tuple[LibvirtDriver, list[str]]] = []

    def make(uri: str | dict[str, str], host: str = HOST, **libvirt_opts: Any) -> LibvirtDriver:
        from drivers.libvirt.driver import LibvirtDriver

        uris = uri if isinstance(uri, dict) else {host: uri}
        driver = LibvirtDriver(make_conf(uris, **libvirt_opts))
        hosts: list[str] = []
        started.append((driver, hosts))
        for name in uris:
            driver.init_host(name)
            hosts.append(name)
        return driver

    yield make
    for driver, hosts in started:
        for name in hosts:
            driver.cleanup_host(name)


@pytest.fixture
def driver(daemon: Libvirtd, virt: Any, make_driver: DriverFactory) -> LibvirtDriver:
    """A driver serving host ``h1`` from the daemon's ``test+unix:///default``."""
    return make_driver(daemon.uri_for())
