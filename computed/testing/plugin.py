"""A pytest plugin for a driver's own repository: a broker, a worker running the
driver, and the conformance suite as parametrized tests, one per check id.

Installed with computed (entry point ``pytest11``), it does nothing until a
test asks for its fixtures. Name the driver in the repository's pytest
configuration::

    [pytest]
    computed_driver = mydriver
    # computed_hosts = node-1 node-2         (default: mydriver-1 mydriver-2)

and the suite is one test::

    def test_conformance(conformance_check):
        conformance_check()

``pytest -k 'spawn.'`` then runs the spawn checks; each test id is
``test_conformance[<check id>]``, and a check the driver's declarations make
irrelevant is skipped with the suite's reason. Override the
``computed_worker_options`` fixture (a dict of option groups, for instance
``{"mydriver": {"api_url": ...}}``) to configure the driver, and
``computed_conformance_options`` for the suite's ``[conformance]`` options
(``network``, ``image``, ``volume_command``, ``hypervisor_command``...).

Fixtures, all session-scoped: ``computed_broker`` (a private
:class:`~computed.testing.broker.RabbitMQBroker`), ``computed_worker`` (a
:class:`~computed.testing.workers.WorkerProcess` serving the hosts),
``computed_api`` (a :class:`rpcapi.ComputeAPI` reaching it),
``computed_notifications`` (a
:class:`~computed.testing.notifications.NotificationCollector` on the
worker's notifications) and ``conformance_context``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from computed import conf as conf_module
from computed import rpc
from computed.conformance._context import CheckSkipped, SuiteContext
from computed.conformance.checks import CHECKS, Check
from computed.registry import Registry
from computed.testing.broker import RabbitMQBroker
from computed.testing.notifications import NotificationCollector, collecting
from computed.testing.workers import WorkerProcess
from rpcapi import ComputeAPI

__all__ = ["ConformanceCheck"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("computed_driver", "the computed.drivers entry point the worker runs")
    parser.addini(
        "computed_hosts",
        "compute hosts the worker serves (default: <driver>-1 and <driver>-2)",
        type="args",
    )
    parser.addoption(
        "--computed-driver",
        default=None,
        help="the computed.drivers entry point the worker runs (overrides computed_driver)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_check" in metafunc.fixturenames:
        metafunc.parametrize(
            "conformance_check", CHECKS, ids=[c.id for c in CHECKS], indirect=True, scope="function"
        )


class ConformanceCheck:
    """One check of the suite, run against the session's worker when called."""

    def __init__(self, check: Check, context: SuiteContext) -> None:
        self.id = check.id
        self.purpose = check.purpose
        self.group = check.group
        self._check = check
        self._context = context

    def __call__(self) -> None:
        """Run the check: a failure is an AssertionError, a skip a pytest skip."""
        try:
            self._check.run(self._context)
        except CheckSkipped as exc:
            pytest.skip(str(exc))


@pytest.fixture(scope="session")
def computed_driver_name(pytestconfig: pytest.Config) -> str:
    name = pytestconfig.getoption("--computed-driver") or pytestconfig.getini("computed_driver")
    if not name:
        raise pytest.UsageError("name your driver: computed_driver = <entry point> in pytest.ini")
    return str(name)


@pytest.fixture(scope="session")
def computed_hosts(pytestconfig: pytest.Config, computed_driver_name: str) -> list[str]:
    hosts = list(pytestconfig.getini("computed_hosts"))
    return hosts or [f"{computed_driver_name}-1", f"{computed_driver_name}-2"]


@pytest.fixture(scope="session")
def computed_worker_options() -> dict[str, dict[str, Any]]:
    """Option groups added to the worker's configuration; override to configure your driver."""
    return {}


@pytest.fixture(scope="session")
def computed_conformance_options() -> dict[str, Any]:
    """Keyword arguments of the suite's context: network, image, volume_command, ..."""
    return {}


@pytest.fixture(scope="session")
def computed_broker() -> Iterator[RabbitMQBroker]:
    with RabbitMQBroker() as running:
        yield running


@pytest.fixture(scope="session")
def computed_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("computed")


@pytest.fixture(scope="session")
def computed_worker(
    computed_broker: RabbitMQBroker,
    computed_workdir: Path,
    computed_driver_name: str,
    computed_hosts: list[str],
    computed_worker_options: dict[str, dict[str, Any]],
) -> Iterator[WorkerProcess]:
    options: dict[str, dict[str, Any]] = {
        "DEFAULT": {
            "transport_url": computed_broker.url,
            "driver": computed_driver_name,
            "hosts": computed_hosts,
            "worker_id": computed_driver_name,
        },
        "registry": {"connection": f"sqlite:///{computed_workdir}/registry.sqlite"},
    }
    for group, values in computed_worker_options.items():
        options.setdefault(group, {}).update(values)
    worker = WorkerProcess(str(computed_workdir), options, name=computed_driver_name)
    try:
        worker.start()
        yield worker
    finally:
        if worker.process is not None and worker.poll() is None:
            worker.kill()


@pytest.fixture(scope="session")
def computed_conf(computed_worker: WorkerProcess) -> Iterator[cfg.ConfigOpts]:
    """The process's configuration (oslo.messaging reads the global one), pointed at
    the worker's broker and registry for the session."""
    conf = conf_module.CONF
    conf_module.register_all(conf)
    conf([], project="computed", default_config_files=[])
    url = computed_worker.options["DEFAULT"]["transport_url"]
    rpc.get_transport(conf, url=url).cleanup()  # registers transport_url
    conf.set_override("transport_url", url)
    conf.set_override("connection", computed_worker.options["registry"]["connection"], "registry")
    conf.set_override("required_tier", "untested", group="conformance")
    yield conf
    conf.reset()


@pytest.fixture(scope="session")
def computed_api(computed_conf: cfg.ConfigOpts) -> Iterator[ComputeAPI]:
    api = ComputeAPI(computed_conf, registry=Registry(computed_conf.registry.connection))
    yield api
    api.cleanup()


@pytest.fixture(scope="session")
def computed_notifications(computed_conf: cfg.ConfigOpts) -> Iterator[NotificationCollector]:
    with collecting(computed_conf, "plugin") as collector:
        yield collector


@pytest.fixture(scope="session")
def conformance_context(
    computed_api: ComputeAPI,
    computed_hosts: list[str],
    computed_notifications: NotificationCollector,
    computed_conformance_options: dict[str, Any],
) -> SuiteContext:
    capabilities = computed_api.get_capabilities(None, computed_hosts[0])
    return SuiteContext(
        computed_api,
        computed_hosts,
        capabilities,
        computed_notifications,
        notification_timeout=60.0,
        **computed_conformance_options,
    )


@pytest.fixture
def conformance_check(
    request: pytest.FixtureRequest, conformance_context: SuiteContext
) -> ConformanceCheck:
    """The check this test runs (the plugin parametrizes it over the suite's check ids)."""
    return ConformanceCheck(request.param, conformance_context)
