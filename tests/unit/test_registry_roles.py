"""Drivers' roles: the SQL a DBA is given, and what an SQLite registry says of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg
from oslo_upgradecheck.upgradecheck import Code, Result

from computed import conf as computed_conf
from computed import exception
from computed.cmd import ctl
from computed.cmd._upgrade_check import UpgradeChecks
from computed.registry import Registry
from computed.registry.roles import GUARD_TRIGGER, grant_sql, group_role


def test_the_sql_grants_the_drivers_group_and_makes_the_login_its_member() -> None:
    statements = grant_sql("libvirt", "libvirt-node1", "registry")
    assert 'CREATE ROLE "computed_driver_libvirt" NOLOGIN' in statements[0]
    assert statements[-1] == 'GRANT "computed_driver_libvirt" TO "libvirt-node1"'
    (writes,) = [s for s in statements if "GRANT INSERT, UPDATE, DELETE" in s]
    assert f"trigger_name = '{GUARD_TRIGGER}' AND event_object_schema = 'registry'" in writes


@pytest.mark.parametrize("driver", ["", "lib virt", "x;DROP", "d" * 48])
def test_a_driver_name_that_cannot_name_a_role_is_refused(driver: str) -> None:
    with pytest.raises(exception.InvalidRequest, match="cannot name a database role"):
        group_role(driver)


def test_a_login_name_with_a_quote_is_quoted() -> None:
    assert grant_sql("fake", 'a"b')[-1] == 'GRANT "computed_driver_fake" TO "a""b"'


def test_an_sqlite_registry_has_no_roles(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    try:
        assert registry.driver_roles() == {}
        assert not registry.driver_checks_installed()
        with pytest.raises(exception.RegistryError, match="need a PostgreSQL registry"):
            registry.grant_driver("fake", "worker")
    finally:
        registry.close()


def test_computedctl_prints_the_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["registry", "grant", "fake", "w1", "--sql", "--schema", "s"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == 'GRANT "computed_driver_fake" TO "w1";'


def test_computedctl_names_a_bad_driver(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl.main(["registry", "grant", "no good", "w1", "--sql"]) == 1
    assert "driver name 'no good' cannot name a database role" in capsys.readouterr().err


def test_upgrade_check_says_an_sqlite_registry_has_no_roles(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/registry.sqlite"
    Registry(url).migrate()
    result = driver_roles_check(url)
    assert result.code == Code.SUCCESS
    assert "not in use" in result.details and "any worker can write" in result.details


def driver_roles_check(url: str) -> Result:
    conf = cfg.ConfigOpts()
    computed_conf.register_all(conf)
    conf([], project="computed", default_config_files=[])
    conf.set_override("connection", url, group="registry")
    checks = UpgradeChecks(conf)
    (check,) = [c for name, c in checks._upgrade_checks if name == "Drivers' database roles"]
    result: Result = check(checks)  # type: ignore[operator]
    return result
