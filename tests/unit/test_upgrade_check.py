"""``computedctl upgrade check``: each check's Success, Warning and Failure, on a real SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from oslo_config import cfg
from oslo_upgradecheck.upgradecheck import Code, Result

from computed import conf as computed_conf
from computed import version
from computed.cmd._upgrade_check import UpgradeChecks
from computed.registry import Registry, WorkerRecord, migration
from computed.registry.api import STATE_STOPPED, ConformanceRecord


@pytest.fixture
def url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path}/registry.sqlite"


@pytest.fixture
def registry(url: str) -> Iterator[Registry]:
    registry = Registry(url)
    registry.migrate()
    yield registry
    registry.close()


@pytest.fixture
def conf(url: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    computed_conf.register_all(conf)
    conf([], project="computed", default_config_files=[])
    conf.set_override("connection", url, group="registry")
    return conf


def _worker(
    worker_id: str,
    rpc_version: str = version.RPC_API_VERSION,
    rpc_min_version: str = "1.0",
    hosts: tuple[str, ...] = ("h1",),
    driver_version: str = "0.4.0",
) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        driver="fake",
        hosts=hosts,
        rpc_version=rpc_version,
        rpc_min_version=rpc_min_version,
        support_tier="conformant",
        driver_version=driver_version,
    )


def _run(conf: cfg.ConfigOpts, name: str) -> Result:
    checks = UpgradeChecks(conf)
    (check,) = [c for n, c in checks._upgrade_checks if n == name]
    assert callable(check)
    result: Result = check(checks)
    return result


# Registry schema ------------------------------------------------------------------


def test_schema_at_head_succeeds(conf: cfg.ConfigOpts, registry: Registry) -> None:
    result = _run(conf, "Registry schema")
    assert (result.code, result.details) == (
        Code.SUCCESS,
        f"At revision {migration.head_revision()}, this release's newest.",
    )


def test_an_empty_database_fails_saying_what_to_run(conf: cfg.ConfigOpts) -> None:
    result = _run(conf, "Registry schema")
    assert result.code == Code.FAILURE
    assert "has no schema: run 'computedctl db sync'" in (result.details or "")


def _at_previous_revision(url: str) -> str:
    previous = sorted(migration.known_revisions())[-2]
    migration.upgrade(sa.create_engine(url), revision=previous)
    return previous


def test_an_older_schema_warns_when_workers_migrate_it(conf: cfg.ConfigOpts, url: str) -> None:
    previous = _at_previous_revision(url)
    result = _run(conf, "Registry schema")
    assert result.code == Code.WARNING
    assert f"At revision {previous}; this release migrates it" in (result.details or "")


def test_an_older_schema_fails_when_workers_do_not_migrate_it(
    conf: cfg.ConfigOpts, url: str
) -> None:
    _at_previous_revision(url)
    conf.set_override("auto_migrate", False, group="registry")
    result = _run(conf, "Registry schema")
    assert result.code == Code.FAILURE
    assert "run 'computedctl db sync' before starting them" in (result.details or "")


@pytest.mark.parametrize(
    ("later_change", "code", "says"),
    [
        (None, Code.SUCCESS, "At revision 9001, migrated by a later release"),
        ("ALTER TABLE workers DROP COLUMN machine", Code.FAILURE, "without workers.machine"),
    ],
)
def test_a_later_release_schema_needs_every_column_this_one_uses(
    conf: cfg.ConfigOpts, registry: Registry, later_change: str | None, code: Code, says: str
) -> None:
    with registry.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9001'"))
        if later_change:
            connection.execute(sa.text(later_change))
    result = _run(conf, "Registry schema")
    assert result.code == code
    assert says in (result.details or "")


# Minimum worker version ---------------------------------------------------------------


def test_live_workers_at_the_minimum_succeed(conf: cfg.ConfigOpts, registry: Registry) -> None:
    registry.register(_worker("w1"))
    result = _run(conf, "Minimum worker version")
    assert result.code == Code.SUCCESS
    assert result.details == (
        "Every live worker (1) speaks RPC 1.0 or newer (worker w1 serves nothing older)."
    )


def test_a_worker_below_the_configured_minimum_fails(
    conf: cfg.ConfigOpts, registry: Registry
) -> None:
    registry.register(_worker("old", rpc_version="1.2"))
    registry.register(_worker("new", hosts=("h2",)))
    conf.set_override("minimum_worker_version", "delta", group="upgrade_levels")
    result = _run(conf, "Minimum worker version")
    assert result.code == Code.FAILURE
    assert (result.details or "").startswith(
        "old (RPC 1.2, driver fake) speak less than RPC 1.3, the oldest version this "
        "deployment supports ([upgrade_levels] minimum_worker_version = delta)"
    )


def test_a_worker_below_what_the_newest_worker_serves_fails(
    conf: cfg.ConfigOpts, registry: Registry
) -> None:
    registry.register(_worker("old", rpc_version="1.3"))
    registry.register(_worker("next", rpc_version="2.0", rpc_min_version="2.0", hosts=("h2",)))
    result = _run(conf, "Minimum worker version")
    assert result.code == Code.FAILURE
    assert "(worker next serves nothing older)" in (result.details or "")


def test_a_stopped_old_worker_does_not_count(conf: cfg.ConfigOpts, registry: Registry) -> None:
    registry.register(_worker("old", rpc_version="1.2"))
    registry.set_state("old", STATE_STOPPED)
    conf.set_override("minimum_worker_version", "1.3", group="upgrade_levels")
    assert _run(conf, "Minimum worker version").code == Code.SUCCESS


def test_a_worker_this_release_no_longer_serves_warns(
    conf: cfg.ConfigOpts, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(version, "RPC_API_MIN_VERSION", "1.3")
    registry.register(_worker("old", rpc_version="1.2"))
    result = _run(conf, "Minimum worker version")
    assert result.code == Code.WARNING
    assert "once its first worker registers, old (RPC 1.2, driver fake)" in (result.details or "")


@pytest.mark.parametrize(
    ("minimum", "says"),
    [
        ("banana", "is neither a major.minor version nor a release alias"),
        ("9.0", "newer than this release speaks"),
    ],
)
def test_an_unusable_minimum_fails(
    conf: cfg.ConfigOpts, registry: Registry, minimum: str, says: str
) -> None:
    conf.set_override("minimum_worker_version", minimum, group="upgrade_levels")
    result = _run(conf, "Minimum worker version")
    assert result.code == Code.FAILURE
    assert says in (result.details or "")


def test_an_unreadable_registry_fails_the_checks_that_read_it(conf: cfg.ConfigOpts) -> None:
    result = _run(conf, "Minimum worker version")
    assert result.code == Code.FAILURE
    assert "The registry cannot be read: Registry error:" in (result.details or "")
    assert _run(conf, "Queue type").code == Code.SUCCESS


# RPC version pin ----------------------------------------------------------------------


def test_the_automatic_pin_succeeds(conf: cfg.ConfigOpts, registry: Registry) -> None:
    registry.register(_worker("w1"))
    result = _run(conf, "RPC version pin")
    assert (result.code, result.details) == (Code.SUCCESS, "[upgrade_levels] compute = auto.")


@pytest.mark.parametrize("pin", ["1.2", "gamma", "auto-min"])
def test_a_pin_holding_back_hosts_warns(conf: cfg.ConfigOpts, registry: Registry, pin: str) -> None:
    registry.register(_worker("new", hosts=("h1",)))
    registry.register(_worker("old", rpc_version="1.2", hosts=("h2",)))
    conf.set_override("compute", pin, group="upgrade_levels")
    result = _run(conf, "RPC version pin")
    assert result.code == Code.WARNING
    assert "holds back 1 host(s) whose workers could take more: h1 (1.2:" in (result.details or "")


def test_a_pin_below_what_a_host_serves_fails(conf: cfg.ConfigOpts, registry: Registry) -> None:
    registry.register(_worker("w1", rpc_min_version="1.2"))
    conf.set_override("compute", "1.1", group="upgrade_levels")
    result = _run(conf, "RPC version pin")
    assert result.code == Code.FAILURE
    assert "Clients refuse every call to 1 host(s)" in (result.details or "")
    assert "h1 (at most 1.1: pinned to 1.1 by [upgrade_levels] compute; serves 1.2+)" in (
        result.details or ""
    )


def test_an_invalid_pin_fails(conf: cfg.ConfigOpts, registry: Registry) -> None:
    conf.set_override("compute", "banana", group="upgrade_levels")
    result = _run(conf, "RPC version pin")
    assert result.code == Code.FAILURE
    assert "compute = 'banana' is neither" in (result.details or "")


# Support tiers ------------------------------------------------------------------------


def _record_run(registry: Registry, tier: str, driver_version: str = "0.4.0") -> None:
    registry.record_conformance(
        ConformanceRecord(
            driver="fake",
            driver_version=driver_version,
            rpc_version=version.RPC_API_VERSION,
            host="h1",
            passed=10,
            failed=0 if tier == "conformant" else 1,
            skipped=0,
            failing=() if tier == "conformant" else ("lifecycle.reboot",),
            tier=tier,
        )
    )


def test_drivers_meeting_the_required_tier_succeed(
    conf: cfg.ConfigOpts, registry: Registry
) -> None:
    registry.register(_worker("w1"))
    _record_run(registry, "partial")
    assert _run(conf, "Support tiers").code == Code.SUCCESS


def test_an_untested_driver_version_fails_naming_what_to_run(
    conf: cfg.ConfigOpts, registry: Registry
) -> None:
    registry.register(_worker("w1", hosts=("h7",), driver_version="0.5.0"))
    _record_run(registry, "conformant")  # of 0.4.0, not of what runs
    result = _run(conf, "Support tiers")
    assert result.code == Code.FAILURE
    assert "fake 0.5.0 is untested (workers w1; run 'computed-conformance --host h7 --record'" in (
        result.details or ""
    )


def test_a_partial_driver_fails_where_conformant_is_required(
    conf: cfg.ConfigOpts, registry: Registry
) -> None:
    registry.register(_worker("w1"))
    _record_run(registry, "partial")
    conf.set_override("required_tier", "conformant", group="conformance")
    assert _run(conf, "Support tiers").code == Code.FAILURE
    conf.set_override("required_tier", "untested", group="conformance")
    assert _run(conf, "Support tiers").code == Code.SUCCESS


# Queue type and broker TLS ---------------------------------------------------------------


def test_quorum_queues_succeed_and_classic_ones_warn(conf: cfg.ConfigOpts) -> None:
    assert _run(conf, "Queue type").code == Code.SUCCESS
    conf.set_override("rabbit_quorum_queue", False, group="oslo_messaging_rabbit")
    result = _run(conf, "Queue type")
    assert result.code == Code.WARNING
    assert "classic transient queues" in (result.details or "")


@pytest.mark.parametrize(
    ("transport_url", "ssl", "code"),
    [
        ("rabbit://", False, Code.SUCCESS),
        ("rabbit://u:p@localhost:5672/", False, Code.SUCCESS),
        ("rabbit://u:p@127.0.0.2:5672,u:p@[::1]:5672/", False, Code.SUCCESS),
        ("rabbit://u:p@broker.example:5672/", False, Code.WARNING),
        ("rabbit://u:p@broker.example:5671/", True, Code.SUCCESS),
        ("rabbit://u:p@broker.example:5671/?ssl=1", False, Code.SUCCESS),
        ("rabbit://u:p@localhost:5672,u:p@192.0.2.7:5672/", False, Code.WARNING),
    ],
)
def test_broker_tls(conf: cfg.ConfigOpts, transport_url: str, ssl: bool, code: Code) -> None:
    checks = UpgradeChecks(conf)  # registers oslo.messaging's options
    conf.set_override("transport_url", transport_url)
    conf.set_override("ssl", ssl, group="oslo_messaging_rabbit")
    result = checks._check_broker_tls()
    assert result.code == code, result.details
    if code == Code.WARNING:
        assert "set [oslo_messaging_rabbit] ssl = true" in (result.details or "")


def test_broker_tls_covers_the_notification_transport(conf: cfg.ConfigOpts) -> None:
    checks = UpgradeChecks(conf)
    conf.set_override(
        "transport_url", "rabbit://u:p@notify.example:5672/", group="oslo_messaging_notifications"
    )
    result = checks._check_broker_tls()
    assert result.code == Code.WARNING
    assert "[oslo_messaging_notifications] transport_url (notify.example)" in (result.details or "")


def test_an_invalid_transport_url_fails(conf: cfg.ConfigOpts) -> None:
    checks = UpgradeChecks(conf)
    conf.set_override("transport_url", "no scheme at all")
    assert checks._check_broker_tls().code == Code.FAILURE


# All of them ----------------------------------------------------------------------------


def test_the_worst_result_is_the_outcome(
    conf: cfg.ConfigOpts, registry: Registry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    registry.register(_worker("w1"))
    _record_run(registry, "conformant")
    key = tmp_path / "journal.key"
    key.write_bytes(Fernet.generate_key())
    conf.set_override("journal_key_file", str(key), group="registry")
    assert UpgradeChecks(conf).check() == Code.SUCCESS
    conf.set_override("rabbit_quorum_queue", False, group="oslo_messaging_rabbit")
    assert UpgradeChecks(conf).check() == Code.WARNING
    conf.set_override("compute", "banana", group="upgrade_levels")
    assert UpgradeChecks(conf).check() == Code.FAILURE
    table = capsys.readouterr().out
    assert "| Check: RPC version pin" in table and "| Result: Failure" in table


# Journal secrets -------------------------------------------------------------------------


def test_journal_secrets_warn_without_a_key_and_fail_with_a_bad_one(
    conf: cfg.ConfigOpts, tmp_path: Path
) -> None:
    result = _run(conf, "Journal secrets")
    assert result.code == Code.WARNING
    assert "computedctl registry key PATH" in (result.details or "")

    conf.set_override("journal_key_file", str(tmp_path / "missing.key"), group="registry")
    result = _run(conf, "Journal secrets")
    assert result.code == Code.FAILURE
    assert "missing.key" in (result.details or "")

    key = tmp_path / "journal.key"
    key.write_bytes(Fernet.generate_key())
    conf.set_override("journal_key_file", str(key), group="registry")
    assert _run(conf, "Journal secrets").code == Code.SUCCESS
