"""Fixtures for the XenAPI driver's tests against the xapi test server.

The server (``tests.xapiserver``) speaks real XML-RPC over http or https to
the unmodified ``XenAPI`` client, so the driver runs the code path it runs
against a real pool. Skipped where the ``XenAPI`` client is not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from oslo_config import cfg

from tests.functional import _drivers
from tests.functional._drivers import closed_port, silent_port  # noqa: F401  (fixtures)
from tests.xapiserver import XapiTestServer

if TYPE_CHECKING:
    from drivers.xenapi.driver import XenAPIDriver

#: The compute host the ``driver`` fixture serves, and the xapi host behind it.
HOST = "xen1"
XAPI_HOST = "xs-a"
POOL = "pool1"
USER = "root"
#: Distinctive, so that a test can look for it in every log line and message.
PASSWORD = "pw-Zq7-never-logged"

DriverFactory = Callable[..., "XenAPIDriver"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xenapi: runs against the xapi test server")


@pytest.fixture(autouse=True)
def _need_client() -> None:
    pytest.importorskip("XenAPI")


def make_server(tls: bool = False, **kwargs: Any) -> XapiTestServer:
    kwargs.setdefault("pools", [f"{POOL}:{USER}:{PASSWORD}:{XAPI_HOST},xs-b"])
    return XapiTestServer(tls=tls, **kwargs)


@pytest.fixture
def server() -> Iterator[XapiTestServer]:
    """A fresh pool ``pool1`` (hosts xs-a and xs-b) over http, for one test."""
    with make_server() as srv:
        yield srv


@pytest.fixture
def tls_server() -> Iterator[XapiTestServer]:
    """The same pool over https, with a self-signed certificate."""
    with make_server(tls=True) as srv:
        yield srv


def make_conf(
    urls: dict[str, str], hosts: dict[str, str] | None = None, **xenapi_opts: Any
) -> cfg.ConfigOpts:
    """A configuration of the pools ``urls``; by default HOST on pool1/xs-a."""
    from drivers.xenapi.driver import XenAPIDriver

    xenapi_opts.setdefault("password", PASSWORD)
    xenapi_opts.setdefault("connect_timeout", 2.0)
    xenapi_opts.setdefault("call_timeout", 10.0)
    return _drivers.make_conf(
        XenAPIDriver,
        "xenapi",
        pool_urls=urls,
        hosts=hosts or {HOST: f"{POOL}/{XAPI_HOST}"},
        **xenapi_opts,
    )


@pytest.fixture
def make_driver() -> Iterator[DriverFactory]:
    """``make_driver(url_or_urls, hosts=None, init=True, **xenapi_opts)``, cleaned up after."""
    from drivers.xenapi.driver import XenAPIDriver

    def make(
        url: str | dict[str, str],
        hosts: dict[str, str] | None = None,
        init: bool = True,
        **xenapi_opts: Any,
    ) -> XenAPIDriver:
        urls = url if isinstance(url, dict) else {POOL: url}
        conf = make_conf(urls, hosts, **xenapi_opts)
        return serve(XenAPIDriver(conf), conf.xenapi.hosts if init else ())

    with _drivers.serving() as serve:
        yield make


@pytest.fixture
def driver(server: XapiTestServer, make_driver: DriverFactory) -> XenAPIDriver:
    """A driver serving HOST from xapi host xs-a of the http pool."""
    return make_driver(server.url)


@pytest.fixture
def xapi(server: XapiTestServer) -> Iterator[Any]:
    """An observer's own ``XenAPI`` session on the pool (its ``xenapi`` proxy)."""
    import XenAPI

    session = XenAPI.Session(server.url)
    session.xenapi.login_with_password(USER, PASSWORD, "2.21", "observer")
    yield session.xenapi
    try:
        session.xenapi.session.logout()
    except Exception:
        pass
