"""Fixtures for the Hyper-V driver's tests against the WinRM test server.

The server (tests/winrmserver) speaks real WinRM to the unmodified pywinrm:
NTLM with message sealing over http, Basic over https. See its EMULATION.md
for what of Hyper-V it emulates and from which sources.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from oslo_config import cfg

pytest.importorskip("winrm")

from drivers.hyperv.driver import HyperVDriver  # noqa: E402
from tests.functional import _drivers  # noqa: E402
from tests.functional._drivers import closed_port, silent_port  # noqa: E402, F401  (fixtures)
from tests.winrmserver import HyperVHost, WinRMTestServer, make_self_signed_cert  # noqa: E402

#: The account the test servers accept. The password is distinctive so that
#: a test can look for it in logs and errors.
USER = "CORP\\computed"
PASSWORD = "Pa55-w0rd/S3cr3t'x"
#: The hosts the ``server`` fixture emulates and the ``driver`` fixture serves.
HOST = "HV01"
OTHER_HOST = "HV02"

DriverFactory = Callable[..., HyperVDriver]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hyperv: runs against the WinRM test server")


def make_conf(urls: dict[str, str], **hyperv_opts: Any) -> cfg.ConfigOpts:
    """A configuration serving each host of ``urls`` at its WinRM URL."""
    hyperv_opts.setdefault("username", USER)
    hyperv_opts.setdefault("password", PASSWORD)
    return _drivers.make_conf(HyperVDriver, "hyperv", host_urls=urls, **hyperv_opts)


@pytest.fixture
def server() -> Iterator[WinRMTestServer]:
    """Two emulated hosts over http (NTLM, sealed messages)."""
    with WinRMTestServer(
        users={USER: PASSWORD}, hosts=[HyperVHost(HOST), HyperVHost(OTHER_HOST)]
    ) as running:
        yield running


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(tls_files: tuple[str, str]) -> Iterator[WinRMTestServer]:
    """One emulated host over https, where Basic authentication is allowed."""
    with WinRMTestServer(users={USER: PASSWORD}, hosts=[HyperVHost(HOST)], tls=tls_files) as s:
        yield s


@pytest.fixture
def make_driver() -> Iterator[DriverFactory]:
    """``make_driver(urls, **hyperv_opts)``: a driver with every host of ``urls`` initialised."""
    with _drivers.serving() as serve:
        yield lambda urls, **opts: serve(HyperVDriver(make_conf(urls, **opts)), urls)


@pytest.fixture
def driver(server: WinRMTestServer, make_driver: DriverFactory) -> HyperVDriver:
    """A driver serving both hosts of ``server`` over NTLM."""
    return make_driver(dict(server.urls))


def spawn_then_remove_behind_its_back(driver: HyperVDriver, server: WinRMTestServer) -> str:
    """Spawn an instance (the driver then remembers its VM's Id), then remove the
    VM on the host directly; the instance's UUID."""
    from computed.objects import InstanceSpec
    from tests.winrmserver import VMState

    spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name="vm", vcpus=1, memory_mb=64)
    driver.spawn(HOST, spec)
    host = server.host(HOST)
    [vm] = host.vms()
    host.set_state(vm, VMState.Off)
    host.remove(vm)
    return str(spec.uuid)
