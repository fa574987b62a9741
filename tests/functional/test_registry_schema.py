"""A registry schema migrated by a later release: expand-only migrations keep older workers serving.

A later release's migrations are made here the way a release adds one: the
current migrations directory copied, plus one revision. An expanding one
(a new table, a new nullable column) must leave the current worker able to
start and serve; a contracting one (a column this release uses dropped)
must stop it at start with exit status 4 and a line that names what is gone.
And the migrations this release ships must themselves be expand-only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from computed import exception
from computed.registry import Registry, migration
from computed.testing.workers import WorkerProcess, console_command
from tests.functional.conftest import Deployment

_MIGRATIONS = Path(migration.__file__).with_name("migrations")

_EXPAND = """
    op.create_table(
        "host_traits",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("trait", sa.String(255), primary_key=True),
    )
    op.add_column("workers", sa.Column("zone", sa.String(255), nullable=True))
"""

_CONTRACT = """
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("driver_version")
"""


def _later_release(tmp_path: Path, body: str) -> str:
    """A migrations directory with one revision after this release's head."""
    scripts = tmp_path / "later-migrations"
    shutil.copytree(_MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = migration.head_revision()
    (scripts / "versions" / "9001_later.py").write_text(
        textwrap.dedent(
            f'''
            """A later release's migration."""
            import sqlalchemy as sa
            from alembic import op

            revision = "9001"
            down_revision = "{head}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
            '''
        )
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    return str(scripts)


def _snapshot(engine: sa.Engine) -> dict[str, set[str]]:
    inspector = sa.inspect(engine)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }


def test_each_shipped_migration_only_adds(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/steps.sqlite")
    revisions = [
        script.revision for script in reversed(list(migration._scripts().walk_revisions()))
    ]
    before: dict[str, set[str]] = {}
    for revision in revisions:
        migration.upgrade(engine, revision)
        after = _snapshot(engine)
        gone = [
            f"{table}.{column}"
            for table, columns in before.items()
            for column in columns - after.get(table, set())
        ] + [table for table in before if table not in after]
        assert not gone, f"migration {revision} removes {gone}: migrations must be expand-only"
        before = after
    assert revisions[-1] == migration.head_revision() and len(revisions) >= 5


def test_a_later_expansion_is_used_as_it_is(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/registry.sqlite"
    engine = sa.create_engine(url)
    migration.upgrade(engine, scripts=_later_release(tmp_path, _EXPAND))
    registry = Registry(url)
    registry.migrate()  # leaves the later schema alone
    assert migration.current_revision(registry.engine) == "9001"
    assert registry.is_current()
    registry.close()


def test_a_later_contraction_is_refused_naming_what_is_gone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/registry.sqlite"
    migration.upgrade(sa.create_engine(url), scripts=_later_release(tmp_path, _CONTRACT))
    registry = Registry(url)
    with pytest.raises(exception.RegistryError, match=r"9001.*lacks workers\.driver_version"):
        registry.migrate()
    registry.close()


def test_a_worker_starts_and_serves_on_a_later_release_schema(
    deployment: Deployment, tmp_path: Path
) -> None:
    migration.upgrade(
        sa.create_engine(deployment.registry_url), scripts=_later_release(tmp_path, _EXPAND)
    )
    host = f"schema-{tmp_path.name[-6:]}"
    deployment.start_worker([host], "on-later-schema")
    pong = deployment.api().ping(None, host)
    assert pong.worker_id == "on-later-schema"
    ctl = tmp_path / "ctl.conf"
    ctl.write_text(f"[registry]\nconnection = {deployment.registry_url}\n")
    shown = subprocess.run(
        [*console_command("computedctl"), "--config-file", str(ctl), "db", "version", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(shown) == {
        "current": "9001",
        "newest": migration.head_revision(),
        "state": "newer than this release: migrated by a later one",
    }


def test_a_worker_refuses_to_start_on_a_contracted_schema(
    deployment: Deployment, tmp_path: Path
) -> None:
    migration.upgrade(
        sa.create_engine(deployment.registry_url), scripts=_later_release(tmp_path, _CONTRACT)
    )
    worker = WorkerProcess(
        str(deployment.workdir),
        deployment.worker_options(["schema-contracted"], "too-old"),
        name="too-old",
    )
    deployment.workers.append(worker)
    worker.start(wait=False)
    assert worker.wait(60) == 4
    assert "lacks workers.driver_version" in worker.log()
