"""Schema migrations of the registry, run programmatically with alembic."""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = ["upgrade", "current_revision", "head_revision", "known_revisions", "missing_columns"]

_SCRIPTS = os.path.join(os.path.dirname(__file__), "migrations")


def _config(scripts: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", scripts or _SCRIPTS)
    return config


def upgrade(engine: sa.Engine, revision: str = "head", scripts: str | None = None) -> None:
    """Bring the schema to ``revision`` (the newest by default).

    :param scripts: another migrations directory (tests: a later release's).
    """
    config = _config(scripts)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return _scripts().get_current_head()


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def known_revisions() -> set[str]:
    """Every revision this code's migrations know."""
    return {script.revision for script in _scripts().walk_revisions()}


def missing_columns(engine: sa.Engine, metadata: sa.MetaData) -> list[str]:
    """The tables and columns of ``metadata`` that the database lacks (``table`` or ``table.column``)."""
    inspector = sa.inspect(engine)
    tables = set(inspector.get_table_names())
    missing = []
    for table in metadata.sorted_tables:
        if table.name not in tables:
            missing.append(table.name)
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing.extend(f"{table.name}.{c.name}" for c in table.columns if c.name not in present)
    return missing
