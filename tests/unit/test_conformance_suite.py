"""The conformance suite's registry of checks and how a run is rated, per group and overall."""

from __future__ import annotations

import io
import re
import shlex
import sys
from pathlib import Path

import pytest

from computed.conformance import CHECKS, CheckResult, SuiteResult
from computed.conformance._check import group_of
from computed.conformance._context import CheckFailed, SuiteContext
from computed.conformance.report import summary, to_json
from computed.objects import HostCapabilities
from drivers import base

#: The ids of the device checks (contract 1.2) and their groups. Ids are
#: stable: CI history and the registry compare runs by them.
DEVICE_CHECKS = {
    "spawn.devices.reported": "lifecycle",
    "spawn.devices.boot_from_volume": "lifecycle",
    "spawn.devices.unsupported_refused": "lifecycle",
    "volume.connector": "volumes",
    "volume.attach.call": "volumes",
    "volume.attach.idempotent": "volumes",
    "volume.detach.idempotent": "volumes",
    "volume.attach.mountpoint_conflict": "volumes",
    "volume.extend.not_attached": "volumes",
    "volume.extend.grows": "volumes",
    "volume.extend.shrink_refused": "volumes",
    "volume.missing_instance": "volumes",
    "volume.listed": "volumes",
    "volume.detach.boot_volume": "volumes",
    "cast.attach_volume": "volumes",
    "volume.attach.from_running": "volumes",
    "volume.attach.from_stopped": "volumes",
    "volume.attach.from_paused": "volumes",
    "volume.attach.from_suspended": "volumes",
    "interface.attach.call": "interfaces",
    "interface.attach.idempotent": "interfaces",
    "interface.detach.idempotent": "interfaces",
    "interface.attach.mac_conflict": "interfaces",
    "interface.attach.unknown_network": "interfaces",
    "interface.missing_instance": "interfaces",
    "interface.listed": "interfaces",
    "interface.survives_power_cycle": "interfaces",
    "cast.attach_interface": "interfaces",
    "interface.attach.from_running": "interfaces",
    "interface.attach.from_stopped": "interfaces",
    "interface.attach.from_paused": "interfaces",
    "interface.attach.from_suspended": "interfaces",
}


def test_check_ids_are_unique_and_name_what_is_checked() -> None:
    ids = [c.id for c in CHECKS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", i) for i in ids), ids


def test_every_check_counts_in_a_group() -> None:
    assert {c.group for c in CHECKS} == set(base.OPERATION_GROUPS)


def test_device_checks_keep_their_ids_and_groups() -> None:
    groups = {c.id: c.group for c in CHECKS}
    assert {i: groups.get(i) for i in DEVICE_CHECKS} == DEVICE_CHECKS


def test_every_optional_operation_is_checked_to_be_refused_in_its_group() -> None:
    groups = {c.id: c.group for c in CHECKS}
    for operation in base.ALL_OPERATIONS:
        if operation not in ("ping", "get_capabilities", "reboot"):
            assert groups[f"unsupported.{operation}"] == group_of(operation)
    assert groups["unsupported.reboot.soft"] == "lifecycle"
    assert groups["unsupported.get_volume_connector"] == "volumes"


@pytest.mark.parametrize(
    ("operation", "group"),
    [
        ("reboot.hard", "lifecycle"),
        ("spawn.volumes", "lifecycle"),
        ("get_console_output", "console"),
        ("extend_volume", "volumes"),
        ("detach_interface", "interfaces"),
        ("ping", "host"),
        ("snapshot", "images"),
        ("unrescue", "rescue"),
        ("get_graphical_console", "console"),
    ],
)
def test_group_of(operation: str, group: str) -> None:
    assert group_of(operation) == group


def _suite(operations: set[str], *results: tuple[str, str, str]) -> SuiteResult:
    suite = SuiteResult("toy", "1.0", "1.2", ["h1"], operations=frozenset(operations))
    suite.results = [
        CheckResult(i, "purpose", outcome, "", 0.0, group) for i, group, outcome in results
    ]
    return suite


def test_each_group_is_rated_on_its_own() -> None:
    suite = _suite(
        {"spawn", "attach_volume", "ping", "attach_interface"},
        ("spawn.call", "lifecycle", "pass"),
        ("volume.attach.call", "volumes", "pass"),
        ("volume.extend.grows", "volumes", "fail"),
        ("host.ping", "host", "pass"),
        ("interface.attach.call", "interfaces", "skip"),
        ("unsupported.get_console_output", "console", "pass"),
    )
    assert {g.group: g.result for g in suite.groups()} == {
        "lifecycle": "conformant",
        "host": "conformant",
        "console": "not claimed",
        "volumes": "partial",
        "interfaces": "untested",
        "images": "not claimed",
        "rescue": "not claimed",
        "migration": "not claimed",
        "live_migration": "not claimed",
        "evacuation": "not claimed",
    }
    volumes = next(g for g in suite.groups() if g.group == "volumes")
    assert (volumes.passed, volumes.failed, volumes.skipped) == (1, 1, 0)
    assert volumes.failing == ("volume.extend.grows",)
    # The overall tier, which the registry records and clients require, is as before.
    assert suite.tier == "partial"
    assert suite.record().failing == ("volume.extend.grows",)


def test_a_refusal_that_fails_makes_an_unclaimed_group_partial() -> None:
    suite = _suite({"spawn"}, ("unsupported.attach_volume", "volumes", "fail"))
    assert {g.group: g.result for g in suite.groups()}["volumes"] == "partial"
    assert suite.tier == "partial"


def test_nothing_failed_is_conformant_overall() -> None:
    suite = _suite({"spawn"}, ("spawn.call", "lifecycle", "pass"))
    assert suite.tier == "conformant"


def test_reports_show_the_groups() -> None:
    suite = _suite(
        {"spawn", "attach_volume"},
        ("spawn.call", "lifecycle", "pass"),
        ("volume.extend.grows", "volumes", "fail"),
    )
    out = io.StringIO()
    summary(suite, out)
    lines = out.getvalue().splitlines()
    assert "  lifecycle   conformant   1 passed, 0 failed, 0 skipped" in lines
    assert "  volumes     partial      0 passed, 1 failed, 0 skipped: volume.extend.grows" in lines
    assert "  interfaces  not claimed  0 passed, 0 failed, 0 skipped" in lines
    data = to_json(suite)
    assert data["tier"] == "partial"
    assert data["groups"]["volumes"] == {
        "result": "partial",
        "passed": 0,
        "failed": 1,
        "skipped": 0,
        "failing": ["volume.extend.grows"],
    }
    assert [c["group"] for c in data["checks"]] == ["lifecycle", "volumes"]


def _context(**options: str) -> SuiteContext:
    capabilities = HostCapabilities(driver="fake", driver_version="1.0", operations=[])
    return SuiteContext(None, ["h"], capabilities, None, 1.0, **options)  # type: ignore[arg-type]


def test_a_volume_is_grown_by_the_extend_command(tmp_path: Path) -> None:
    """As a storage service grows a volume before the host is told (extend_volume)."""
    out = tmp_path / "args"
    script = f"import sys; open({str(out)!r}, 'w').write(' '.join(sys.argv[1:]))"
    volume = _context().volume(size_gb=1)
    _context().grow_volume(volume, 2)  # no command: the host alone is told
    assert not out.exists()
    _context(volume_extend_command=shlex.join([sys.executable, "-c", script])).grow_volume(
        volume, 2
    )
    assert out.read_text() == f"{volume.volume_id} 2"
    failing = _context(volume_extend_command=shlex.join([sys.executable, "-c", "exit(3)"]))
    with pytest.raises(CheckFailed, match="volume_extend_command exited with 3"):
        failing.grow_volume(volume, 2)
