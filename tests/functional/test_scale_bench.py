"""The scale benchmark, run tiny so that it keeps working (its figures are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.stacks import REPO_ROOT, child_env

pytestmark = [pytest.mark.functional, pytest.mark.postgresql]


def test_scale_bench_runs_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    command = [
        *(sys.executable, "-m", "tests.bench.scale_bench"),
        *("--hosts", "20", "--workers", "2", "--heartbeat", "0.5", "--down-time", "3"),
        *("--window", "1", "--resolves", "100", "--pings", "10", "--json", str(out)),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads(out.read_text())
    assert sum(results["ready"]["hosts_per_worker"].values()) == 20
    assert results["broker"]["host_queues"] == 20
    assert results["registry"]["per_s"]["xact_commit"] > 0
    assert results["client"]["route_us"]["resolutions"] == 100
    takeover = results["takeover"]
    assert takeover["hosts_moved"] > 0
    # Every worker it started is gone: none still names its directory.
    leftover = subprocess.run(
        ["pgrep", "-f", results["workdir"]], capture_output=True, text=True
    ).stdout.split()
    assert leftover == []
