"""Drivers load from the entry-point namespace; failures name the driver and the cause."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

from computed import exception
from computed.driver_loader import NAMESPACE, load_driver
from computed.testing.workers import computed_command, write_config
from drivers.fake import FakeDriver


@pytest.fixture
def plugin_path(tmp_path: Path) -> str:
    """A folder holding a distribution whose entry points are broken on purpose."""
    (tmp_path / "brokendrv.py").write_text(
        "raise ImportError('libfoo.so.1: cannot open shared object file')\n"
    )
    (tmp_path / "notadrv.py").write_text("class NotADriver:\n    pass\n")
    (tmp_path / "misnameddrv.py").write_text(
        "from drivers.fake import FakeDriver\n\nclass Driver(FakeDriver):\n    name = 'othername'\n"
    )
    info = tmp_path / "brokendrv-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokendrv\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{NAMESPACE}]\nunimportable = brokendrv:Driver\nnotadriver = notadrv:NotADriver\n"
        "misnamed = misnameddrv:Driver\n"
    )
    return str(tmp_path)


def _load_elsewhere(plugin_path: str, name: str) -> str:
    """Load a driver in a fresh interpreter that has the plugin folder on its path.

    A fresh process sees the new distribution the way a worker would after
    ``pip install``; stevedore caches entry points per process.
    """
    script = (
        "from oslo_config import cfg\n"
        "from computed.driver_loader import load_driver, available_drivers\n"
        "from computed import exception\n"
        "conf = cfg.ConfigOpts(); conf([], default_config_files=[])\n"
        "print(','.join(available_drivers()))\n"
        f"try:\n    load_driver({name!r}, conf)\n"
        "except exception.DriverLoadError as exc:\n    print(exc.kwargs['driver'], '|', exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([plugin_path, *sys.path]))
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def _conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    return conf


def test_loads_the_fake_driver() -> None:
    driver = load_driver("fake", _conf())
    assert isinstance(driver, FakeDriver)
    assert driver.conf.fake.vcpus == 64  # its options were registered


def test_unknown_driver_lists_the_installed_ones() -> None:
    with pytest.raises(
        exception.DriverLoadError, match="no such driver; installed drivers: .*fake"
    ):
        load_driver("nope", _conf())


def test_no_driver_configured() -> None:
    with pytest.raises(exception.DriverLoadError, match="no driver configured"):
        load_driver(None, _conf())


def test_import_failure_is_reported_with_its_cause(plugin_path: str) -> None:
    installed, report = _load_elsewhere(plugin_path, "unimportable").splitlines()
    assert "unimportable" in installed.split(",")
    assert report.startswith(
        "unimportable | Cannot load driver 'unimportable': ImportError: libfoo.so.1"
    )


def test_a_class_that_is_not_a_driver_is_refused(plugin_path: str) -> None:
    report = _load_elsewhere(plugin_path, "notadriver").splitlines()[1]
    assert "is not a drivers.base.ComputeDriver subclass" in report


def test_a_worker_refuses_a_driver_named_otherwise_than_its_entry_point(
    plugin_path: str, tmp_path: Path
) -> None:
    # The whole worker, as an operator starts it: it stops before reaching
    # the broker or the registry, with one line saying what to change.
    config = write_config(
        str(tmp_path / "worker.conf"),
        {
            "DEFAULT": {"driver": "misnamed", "hosts": ["h1"], "transport_url": "rabbit://"},
            "registry": {"connection": f"sqlite:///{tmp_path}/registry.sqlite"},
        },
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([plugin_path, *sys.path]))
    done = subprocess.run(
        [*computed_command(), "--config-file", config],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert (
        "computed: error: Cannot load driver 'misnamed': its class misnameddrv.Driver is named "
        "'othername': a driver's name must be its entry-point name (set name = 'misnamed', "
        "or register the entry point as 'othername')"
    ) in done.stderr
    assert not (tmp_path / "registry.sqlite").exists()
