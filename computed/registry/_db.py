"""The registry's database: one engine, its transactions, and its errors as RegistryError.

Each concern of the registry (workers, ownership, journal, conformance
runs, call counters) is a subclass of :class:`Database` in its own module;
:class:`computed.registry.Registry` combines them over one engine.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, orm
from sqlalchemy.dialects import postgresql, sqlite

from computed import exception
from computed.registry import migration, models

LOG = logging.getLogger(__name__)

__all__ = [
    "Database",
    "DriverCursor",
    "DriverStatement",
    "chunks",
    "insert_new",
    "safe_db_url",
    "utcnow",
]

_T = TypeVar("_T")

#: PostgreSQL's SQLSTATE for a privilege the role lacks, and for a write
#: another driver's row refused to a driver's role.
_INSUFFICIENT_PRIVILEGE = "42501"


def utcnow() -> datetime.datetime:
    """Naive UTC now, the form timestamps are stored in."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Database:
    """The registry database behind one SQLAlchemy engine.

    :param url: an SQLAlchemy URL; SQLite files are opened in WAL mode with a
        busy timeout so that several processes can share them.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._sessions = orm.sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def migrate(self, attempts: int = 5) -> None:
        """Bring the schema up to date; safe when several processes race to do it.

        A schema that a later release has migrated further is left alone if
        it still has every table and column this code uses: migrations are
        expand-only within a major release (docs/upgrade.md), so a worker of
        the previous release restarting in the middle of an upgrade serves on.

        :raises computed.exception.RegistryError: if the schema cannot be
            brought up to date, or is newer and lacks what this code uses.
        """
        if self._newer_than_this_code():
            return
        for attempt in range(1, attempts + 1):
            try:
                migration.upgrade(self.engine)
                return
            except sa.exc.SQLAlchemyError as exc:
                if self.is_current():
                    return
                if attempt == attempts:
                    raise exception.RegistryError(reason=f"schema migration failed: {exc}") from exc
                time.sleep(0.2 * attempt)

    def is_current(self) -> bool:
        """Whether this code can use the schema as it is (its own head, or a later
        release's expansion of it).

        :raises computed.exception.RegistryError: if the schema is newer and
            lacks what this code uses.
        """
        try:
            if migration.current_revision(self.engine) == migration.head_revision():
                return True
        except sa.exc.SQLAlchemyError:
            return False
        return self._newer_than_this_code()

    def _newer_than_this_code(self) -> bool:
        """Whether a later release migrated the schema, in a way this code can still use.

        :raises computed.exception.RegistryError: if it did, and something
            this code uses is gone (a contract migration).
        """
        try:
            revision = migration.current_revision(self.engine)
        except sa.exc.SQLAlchemyError:
            return False
        if revision is None or revision in migration.known_revisions():
            return False
        with self._errors():
            missing = migration.missing_columns(self.engine, models.Base.metadata)
        if missing:
            raise exception.RegistryError(
                reason=f"{safe_db_url(self.url)}: the schema is at revision {revision}, newer "
                f"than this release knows ({migration.head_revision()}), and lacks "
                f"{', '.join(missing[:10])}; a later release has removed what this one uses: "
                "upgrade this worker"
            )
        LOG.info(
            "The registry schema is at revision %s, newer than this release's %s; it has "
            "every table and column this release uses",
            revision,
            migration.head_revision(),
        )
        return True

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[orm.Session]:
        """A session in a transaction; database failures become RegistryError."""
        with self._errors(), self._sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """A connection in a transaction, for the hot paths: Core statements cost
        a fraction of an ORM session's CPU. Failures become RegistryError."""
        with self._errors(), self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def _driver_transaction(self) -> Iterator[DriverCursor]:
        """A cursor of the database driver in a transaction, for the statements a
        worker runs for every lifecycle operation.

        SQLAlchemy's execution around a one-row statement costs more CPU than
        SQLite takes to run and commit it; these statements are rendered once
        (:class:`DriverStatement`) and run on the driver's own connection,
        checked out of the same pool. Failures become RegistryError.
        """
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        with self._errors():
            connection = self.engine.raw_connection()
        try:
            cursor = DriverCursor(connection.cursor(), self.engine.dialect)
            try:
                yield cursor
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
        except (dbapi_error, UnicodeError) as exc:  # Unicode: a string it cannot encode
            raise self._failure(exc) from exc
        finally:
            connection.close()

    def _insert_new(self, model: type[models.Base] | sa.Table) -> sqlite.Insert | postgresql.Insert:
        """An INSERT of the database's own dialect, which can skip rows whose key exists
        (``on_conflict_do_nothing``) and still return the rows it inserted."""
        try:
            return insert_new(self.engine.dialect.name, model)
        except ValueError as exc:
            raise exception.RegistryError(reason=f"{safe_db_url(self.url)}: {exc}") from exc

    def _failure(self, error: BaseException) -> exception.RegistryError:
        """What the database driver said, as a RegistryError naming the database."""
        detail = (str(error).strip() or type(error).__name__).splitlines()[0]
        if getattr(error, "pgcode", None) == _INSUFFICIENT_PRIVILEGE:
            detail = f"refused: {detail} (the registry's drivers' roles, docs/security.md)"
        elif "no such table" in detail or "does not exist" in detail:
            detail += " (the schema is missing or old: run 'computedctl db sync')"
        return exception.RegistryError(reason=f"{safe_db_url(self.url)}: {detail}")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:
            raise self._failure(exc.orig or exc) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise exception.RegistryError(reason=f"{safe_db_url(self.url)}: {exc}") from exc
        except UnicodeError as exc:  # a string the database driver cannot encode
            raise exception.RegistryError(reason=f"{safe_db_url(self.url)}: {exc}") from exc


def insert_new(
    dialect: str, model: type[models.Base] | sa.Table
) -> sqlite.Insert | postgresql.Insert:
    """An INSERT of ``dialect`` (see :meth:`Database._insert_new`).

    :raises ValueError: for a database other than SQLite and PostgreSQL.
    """
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise ValueError("only SQLite and PostgreSQL are supported")


class DriverStatement:
    """A Core statement rendered once per dialect, to run on a driver's cursor.

    :param statement: the statement, or a function building it for a dialect's name.
    """

    def __init__(self, statement: sa.ClauseElement | Callable[[str], sa.ClauseElement]) -> None:
        self._statement = statement
        self._rendered: dict[str, tuple[str, Any, dict[str, Any]]] = {}

    def render(self, dialect: sa.Dialect) -> tuple[str, Any, dict[str, Any]]:
        """The SQL, the order of positional parameters (None for named ones) and
        each parameter's conversion to what the driver takes (a datetime to
        SQLite's text, as SQLAlchemy stores it)."""
        rendered = self._rendered.get(dialect.name)
        if rendered is None:
            statement = self._statement
            if callable(statement):
                statement = statement(dialect.name)
            compiled = statement.compile(dialect=dialect)
            assert isinstance(compiled, sa.sql.compiler.SQLCompiler)
            order = list(compiled.positiontup or ()) if compiled.positional else None
            converters = {}
            for name, bind in compiled.binds.items():
                convert = bind.type.bind_processor(dialect)
                if convert is not None:
                    converters[name] = convert
            rendered = self._rendered[dialect.name] = (str(compiled), order, converters)
        return rendered


class DriverCursor:
    """A driver cursor that runs :class:`DriverStatement` s with named parameters."""

    def __init__(self, cursor: Any, dialect: sa.Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def execute(self, statement: DriverStatement, rows: Sequence[dict[str, Any]]) -> None:
        """Run ``statement`` once per row of parameters (one ``executemany``)."""
        if not rows:
            return
        sql, order, converters = statement.render(self._dialect)
        self._cursor.executemany(sql, [_parameters(row, order, converters) for row in rows])

    def fetch(self, statement: DriverStatement, row: dict[str, Any]) -> list[Any]:
        """Run ``statement`` once; the rows it returns."""
        sql, order, converters = statement.render(self._dialect)
        self._cursor.execute(sql, _parameters(row, order, converters))
        return list(self._cursor.fetchall())


def _parameters(row: dict[str, Any], order: Any, converters: dict[str, Any]) -> Any:
    converted = {k: converters[k](v) if k in converters else v for k, v in row.items()}
    return converted if order is None else tuple(converted[k] for k in order)


def safe_db_url(url: str) -> str:
    """The database URL without its password, fit for errors and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"


def _make_engine(url: str) -> sa.Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
        # Readable by its owner only: the journal holds the operations'
        # arguments. SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL loses no committed transaction when a process
        # dies, only (the last ones) when the machine does; FULL would
        # fsync every commit, the worker's main cost per cast.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
