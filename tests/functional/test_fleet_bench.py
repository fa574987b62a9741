"""The fleet benchmark, run tiny so that it keeps working (its figures are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.stacks import REPO_ROOT, child_env

pytestmark = [pytest.mark.functional]


def test_fleet_bench_runs(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    command = [
        *(sys.executable, "-m", "tests.bench.fleet_bench"),
        *("--hosts", "40", "--workers", "2", "--call-hosts", "5", "--rounds", "1"),
        *("--json", str(out)),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    inventory = results["inventory"]
    assert inventory["first_pass"]["rows_written"] == 40
    assert inventory["quiet_pass"]["rows_written"] == 0
    assert inventory["quiet_pass"]["rows_stamped"] == 40
    assert inventory["tenth_changed_pass"]["rows_written"] == 4
    assert results["list"]["all"]["hosts"] == 40
    assert results["calls"]["failed"] == 0
