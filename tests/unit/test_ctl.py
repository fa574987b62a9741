"""The ``computedctl`` console script against a real SQLite registry: output formats,
errors and the exit statuses of ``upgrade check``."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from computed import version
from computed.cmd import _workers, ctl
from computed.registry import Registry, WorkerRecord
from computed.registry.api import ConformanceRecord
from computed.testing.workers import console_command, write_config


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    yield registry
    registry.close()


@pytest.fixture
def config(tmp_path: Path, registry: Registry) -> str:
    # Workers registered by a test stay up however slowly the commands run.
    registry_options = {"connection": registry.url, "down_time": 3600}
    return write_config(str(tmp_path / "ctl.conf"), {"registry": registry_options})


def _ctl(config: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*console_command("computedctl"), "--config-file", config, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _out(config: str, *args: str) -> str:
    done = _ctl(config, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _register(registry: Registry, worker_id: str, hosts: tuple[str, ...], **fields: str) -> None:
    registry.register(
        WorkerRecord(
            id=worker_id,
            driver=fields.pop("driver", "fake"),
            hosts=hosts,
            rpc_version=fields.pop("rpc_version", version.RPC_API_VERSION),
            rpc_min_version="1.0",
            support_tier="conformant",
            driver_version="0.4.0",
            capabilities={"operations": ["spawn"]},
        )
    )


def test_every_command_in_the_docstring_is_registered() -> None:
    documented = set(re.findall(r"^    computedctl ([a-z-]+(?: [a-z]+)?)", ctl.__doc__ or "", re.M))
    registered = {e.name.replace("_", " ") for e in metadata.entry_points(group=ctl.NAMESPACE)} | {
        "help"
    }
    assert documented == registered


def test_workers_as_json_keep_the_older_fields(registry: Registry, config: str) -> None:
    _register(registry, "w1", ("h1", "h2"))
    listing = json.loads(_out(config, "workers", "-f", "json", "--long"))
    older = json.loads(_out(config, "workers", "--json"))
    assert [dict(w, heartbeat_age=0) for w in older] == [dict(w, heartbeat_age=0) for w in listing]
    (worker,) = listing
    assert (worker["id"], worker["status"], worker["hosts"], worker["tier"]) == (
        "w1",
        "up",
        ["h1", "h2"],
        "untested",
    )
    assert worker["capabilities"] == {"operations": ["spawn"]}
    assert 0 <= worker["heartbeat_age"] < 60
    # Without --long, the columns of the table.
    (short,) = json.loads(_out(config, "workers", "-f", "json"))
    assert tuple(short) == _workers.ListWorkers.columns


def test_value_format_with_chosen_columns(registry: Registry, config: str) -> None:
    _register(registry, "w1", ("h1",))
    _register(registry, "w2", ("h2",), rpc_version="1.2")
    registry.set_disabled("w2", True, "firmware upgrade")
    shown = _out(config, "workers", "-f", "value", "-c", "id", "-c", "status", "-c", "rpc_version")
    assert shown.splitlines() == [f"w1 up {version.RPC_API_VERSION}", "w2 disabled 1.2"]
    table = _out(config, "workers", "-c", "id", "-c", "status")
    assert "| w2 | disabled (firmware upgrade) |" in table


def test_sort_column(registry: Registry, config: str) -> None:
    for worker_id, rpc in (("a", "1.2"), ("b", "1.3"), ("c", "1.1")):
        _register(registry, worker_id, (f"h-{worker_id}",), rpc_version=rpc)
    by_version = _out(config, "workers", "-f", "value", "-c", "id", "--sort-column", "rpc_version")
    assert by_version.split() == ["c", "a", "b"]
    newest_first = _out(
        config, "workers", "-f", "value", "-c", "id", "--sort-column", "rpc_version",
        "--sort-descending",
    )  # fmt: skip
    assert newest_first.split() == ["b", "a", "c"]


def test_csv_and_yaml(registry: Registry, config: str) -> None:
    _register(registry, "w1", ("h1", "h2"))
    rows = list(csv.DictReader(io.StringIO(_out(config, "hosts", "-f", "csv"))))
    assert [(r["host"], r["owner"], r["alive"]) for r in rows] == [
        ("h1", "", "True"),
        ("h2", "", "True"),
    ]
    hosts = yaml.safe_load(_out(config, "hosts", "-f", "yaml", "-c", "host", "-c", "candidates"))
    assert hosts == [{"host": "h1", "candidates": ["w1"]}, {"host": "h2", "candidates": ["w1"]}]


def test_hosts_with_moves(registry: Registry, config: str) -> None:
    _register(registry, "w1", ("h1",))
    registry.claim_host("h1", "w1", "initial")
    both = json.loads(_out(config, "hosts", "--moves", "--json"))
    assert [(h["host"], h["owner"], h["candidates"]) for h in both["hosts"]] == [
        ("h1", "w1", ["w1"])
    ]
    assert [(m["host"], m["to_worker_id"], m["reason"]) for m in both["moves"]] == [
        ("h1", "w1", "initial")
    ]
    hosts, moves = _out(config, "hosts", "--moves").split("\n\n")
    assert re.search(r"^\| h1 +\| w1 +\| w1 ", hosts, re.M), hosts
    assert re.search(r"\| h1 +\| None +\| w1 +\| initial +\|$", moves, re.M), moves
    refused = _ctl(config, "hosts", "--moves", "-f", "value")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "computedctl: error: --moves combines two listings and so goes with the table format "
        "or --json; for -f value, run 'computedctl moves' on its own"
    ]


def test_tiers_list_running_untested_versions(registry: Registry, config: str) -> None:
    _register(registry, "w1", ("h1",), driver="other")
    registry.record_conformance(
        ConformanceRecord(
            driver="fake",
            driver_version="0.4.0",
            rpc_version=version.RPC_API_VERSION,
            host="h1",
            passed=3,
            failed=1,
            skipped=0,
            failing=("lifecycle.reboot",),
            tier="partial",
        )
    )
    tiers = json.loads(_out(config, "tiers", "--json"))
    assert [(t["driver"], t["tier"], t["failing"]) for t in tiers] == [
        ("fake", "partial", ["lifecycle.reboot"]),
        ("other", "untested", None),
    ]


def test_db_version_is_one_object(config: str) -> None:
    shown = json.loads(_out(config, "db", "version", "-f", "json"))
    assert shown["state"] == "current" and shown["current"] == shown["newest"]


def test_errors_are_one_line_on_stderr(registry: Registry, config: str, tmp_path: Path) -> None:
    unknown = _ctl(config, "worker", "disable", "nobody")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr.splitlines() == [
        "computedctl: error: Registry error: no worker 'nobody' is registered"
    ]
    broken = tmp_path / "broken.conf"
    broken.write_text("this is not an INI file\n")
    refused = _ctl(str(broken), "workers")
    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1
    assert refused.stderr.startswith("computedctl: error: Configuration error:")
    assert _ctl(config, "workers", "--no-such-flag").returncode == 2
    misspelt = _ctl(config, "wrokers")
    assert (misspelt.returncode, misspelt.stdout) == (2, "")
    assert misspelt.stderr.splitlines() == [
        "computedctl: error: 'wrokers' is not a computedctl command (did you mean 'workers'?); "
        "see 'computedctl help'"
    ]


def test_worker_actions(registry: Registry, config: str) -> None:
    _register(registry, "w1", ("h1",))
    assert _out(config, "worker", "disable", "w1", "--reason", "disk").startswith(
        "Worker w1 disabled"
    )
    assert registry.get("w1").disabled_reason == "disk"
    _out(config, "worker", "enable", "w1")
    _out(config, "worker", "drain", "w1")
    assert registry.get("w1").state == "draining"
    _out(config, "worker", "delete", "w1")
    assert registry.list_workers() == []


def test_upgrade_check_exit_statuses(registry: Registry, config: str, tmp_path: Path) -> None:
    key = str(tmp_path / "journal.key")
    assert _ctl(config, "registry", "key", key).returncode == 0
    assert os.stat(key).st_mode & 0o777 == 0o600
    sealed = write_config(
        str(tmp_path / "sealed.conf"),
        {"registry": {"connection": registry.url, "journal_key_file": key}},
    )
    assert _ctl(sealed, "upgrade", "check").returncode == 0
    unsealed = _ctl(config, "upgrade", "check", "--json")
    assert unsealed.returncode == 1, unsealed.stderr
    assert {c["check"]: c["result"] for c in json.loads(unsealed.stdout)["checks"]}[
        "Journal secrets"
    ] == 1
    again = _ctl(config, "registry", "key", key)
    assert again.returncode == 1 and "cannot create" in again.stderr  # never overwrites a key
    classic = write_config(
        str(tmp_path / "classic.conf"),
        {
            "registry": {"connection": registry.url},
            "oslo_messaging_rabbit": {"rabbit_quorum_queue": False},
        },
    )
    warned = _ctl(classic, "upgrade", "check", "--json")
    assert warned.returncode == 1, warned.stderr
    results = {c["check"]: c["result"] for c in json.loads(warned.stdout)["checks"]}
    assert results["Queue type"] == 1 and results["Registry schema"] == 0
    pinned = write_config(
        str(tmp_path / "pinned.conf"),
        {"registry": {"connection": registry.url}, "upgrade_levels": {"compute": "banana"}},
    )
    failed = _ctl(pinned, "upgrade", "check")
    assert failed.returncode == 2
    assert re.search(r"Check: RPC version pin\s+\|\n\| Result: Failure", failed.stdout)
