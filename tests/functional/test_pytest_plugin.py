"""computed's pytest plugin in a driver's own repository: pytest run there, as its author would.

The example driver's directory is copied out of this tree and its tests run
by a pytest of their own; the plugin starts the broker and the worker and
runs each conformance check as a test of its own id.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from computed.testing import NotificationCollector, RabbitMQBroker, WorkerProcess

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(900)]

EXAMPLE = Path(__file__).resolve().parents[1] / "example_driver"


def _pytest_in(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=800,
    )


@pytest.fixture
def author_repo(tmp_path: Path) -> Path:
    pytest.importorskip("computed_example", reason="tools/bootstrap.sh installs the example")
    copy = tmp_path / "example_driver"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    return copy


def test_the_documented_helpers_are_importable_from_computed_testing() -> None:
    assert [c.__module__ for c in (RabbitMQBroker, WorkerProcess, NotificationCollector)] == [
        "computed.testing.broker",
        "computed.testing.workers",
        "computed.testing.notifications",
    ]


def test_an_authors_repository_runs_the_suite_as_its_tests(author_repo: Path) -> None:
    done = _pytest_in(author_repo)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for check_id in ("host.ping", "spawn.idempotent", "spawn.existing_unchanged"):
        assert f"PASSED tests/test_conformance.py::test_conformance[{check_id}]" in output
    # What the example declares it cannot do is skipped with the suite's reason.
    assert "needs suspend, which the driver declares unsupported" in output


def test_a_broken_driver_fails_the_tests_of_its_check_ids(author_repo: Path) -> None:
    broken = pytest.importorskip("computed_broken.driver")
    done = _pytest_in(author_repo, "--computed-driver", "broken")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    failed = sorted(
        line.split("[", 1)[1].split("]", 1)[0]
        for line in output.splitlines()
        if line.startswith("FAILED tests/test_conformance.py::test_conformance[")
    )
    assert failed == sorted(broken.EXPECTED_FAILURES), output
