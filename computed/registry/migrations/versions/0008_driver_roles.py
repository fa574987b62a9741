"""Per-driver database roles: each driver's workers write only their own driver's rows.

On PostgreSQL, a role that is a member of ``computed_driver_<driver>``
(granted by ``computedctl registry grant``) may write only rows of
that driver, and of the hosts its workers hold, in the tables a worker
writes; it reads only its own driver's journal. Row triggers refuse the
writes, naming the row's driver; row-level security hides the journal.
Superusers, roles with BYPASSRLS, the tables' owner and roles that are a
member of no driver group write as before (docs/security.md).

The journal tables get a ``driver`` column, filled on insert by a trigger
(from the writing role's driver group, else the worker's driver), so a
worker of the previous release, which does not know the column, writes
rows the new policies read. SQLite gets the columns and nothing else.

Expand-only: two nullable columns, functions, triggers and policies.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: The group roles' prefix; the rest of the name is the driver's.
PREFIX = "computed_driver_"

#: The drivers whose groups the current role is a member of; NULL for a role
#: that writes every row (superuser, BYPASSRLS, or a member of no group).
_WRITER_DRIVERS = """
computed_writer_drivers() RETURNS text[] LANGUAGE sql STABLE
    SELECT CASE WHEN me.rolsuper OR me.rolbypassrls THEN NULL ELSE (
        SELECT array_agg(substr(g.rolname, {start}) ORDER BY g.rolname)
        FROM pg_roles g
        WHERE starts_with(g.rolname, '{prefix}') AND pg_has_role(current_user, g.oid, 'MEMBER')
    ) END
    FROM pg_roles me WHERE me.rolname = current_user
$$
"""

_MAY_WRITE = """
computed_may_write(row_driver text) RETURNS boolean LANGUAGE sql STABLE
    SELECT d IS NULL OR coalesce(row_driver = ANY (d), false)
    FROM (SELECT computed_writer_drivers() AS d) AS writer
$$
"""

_WORKER_DRIVER = """
computed_worker_driver(worker text) RETURNS text LANGUAGE sql STABLE
    SELECT driver FROM workers WHERE id = worker
$$
"""

#: The drivers of the workers that declare a host, own it, or owned it last.
_HOST_DRIVERS = """
computed_host_drivers(host_name text) RETURNS text[] LANGUAGE sql STABLE
    SELECT array_agg(DISTINCT w.driver ORDER BY w.driver) FROM workers w
    WHERE w.id IN (
        SELECT worker_id FROM worker_hosts WHERE host = host_name
        UNION SELECT coalesce(worker_id, previous_worker_id) FROM host_owners
        WHERE host = host_name
    )
$$
"""

#: Fills the journal tables' ``driver`` on insert.
_FILL_DRIVER = """
computed_fill_driver() RETURNS trigger LANGUAGE plpgsql
DECLARE
    mine text[] := computed_writer_drivers();
BEGIN
    IF NEW.driver IS NULL AND cardinality(mine) = 1 THEN
        NEW.driver := mine[1];
    END IF;
    IF NEW.driver IS NULL AND TG_TABLE_NAME = 'operation_journal' THEN
        NEW.driver := computed_worker_driver(NEW.worker_id);
    END IF;
    RETURN NEW;
END
$$
"""

#: Refuses a driver's role a row of another driver, or of a host another
#: driver's workers hold.
_CHECK_ROW = """
computed_check_row(tbl text, r jsonb, mine text[]) RETURNS void LANGUAGE plpgsql STABLE
DECLARE
    row_driver text;
    worker_driver text;
    hosts text[] := ARRAY[]::text[];
    host_name text;
    holders text[];
BEGIN
    CASE tbl
    WHEN 'workers' THEN
        row_driver := r->>'driver';
    WHEN 'worker_hosts' THEN
        row_driver := computed_worker_driver(r->>'worker_id');
        hosts := ARRAY[r->>'host'];
    WHEN 'host_owners' THEN
        IF r->>'worker_id' IS NOT NULL THEN
            row_driver := computed_worker_driver(r->>'worker_id');
        END IF;
        hosts := ARRAY[r->>'host'];
    WHEN 'host_moves' THEN
        row_driver := computed_worker_driver(r->>'to_worker_id');
        hosts := ARRAY[r->>'host'];
    WHEN 'operation_journal' THEN
        row_driver := r->>'driver';
        worker_driver := computed_worker_driver(r->>'worker_id');
        hosts := ARRAY[r->>'host'];
    WHEN 'journal_messages' THEN
        -- A tombstone of no known driver (written before the roles) is anyone's.
        IF r->>'driver' IS NULL THEN
            RETURN;
        END IF;
        row_driver := r->>'driver';
    WHEN 'host_inventory' THEN
        row_driver := r->>'driver';
        hosts := ARRAY[r->>'host'];
    WHEN 'instance_migrations' THEN
        hosts := ARRAY[r->>'source_host', r->>'dest_host'];
    END CASE;
    -- A worker claims its hosts before it registers: a row naming a worker
    -- not registered yet is judged by its host alone.
    IF tbl = 'operation_journal' AND row_driver IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('role %s may write only rows of driver %s in %s; this row''s '
                             'driver is unknown', current_user, array_to_string(mine, ', '), tbl);
    END IF;
    IF row_driver IS NOT NULL AND NOT row_driver = ANY (mine) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('role %s may write only rows of driver %s in %s; this row is of '
                             'driver %s', current_user, array_to_string(mine, ', '), tbl,
                             row_driver);
    END IF;
    IF worker_driver IS NOT NULL AND NOT worker_driver = ANY (mine) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('role %s may write only rows of driver %s in %s; this row names '
                             'worker %s, of driver %s', current_user,
                             array_to_string(mine, ', '), tbl, r->>'worker_id', worker_driver);
    END IF;
    FOREACH host_name IN ARRAY hosts LOOP
        holders := computed_host_drivers(host_name);
        IF holders IS NOT NULL AND NOT holders <@ mine THEN
            RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                MESSAGE = format('role %s may not write %s rows of host %s, which workers of '
                                 'driver %s hold', current_user, tbl, host_name,
                                 array_to_string(holders, ', '));
        END IF;
    END LOOP;
END
$$
"""

_CHECK_WRITE = """
computed_check_write() RETURNS trigger LANGUAGE plpgsql
DECLARE
    mine text[] := computed_writer_drivers();
BEGIN
    IF mine IS NOT NULL THEN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            PERFORM computed_check_row(TG_TABLE_NAME, to_jsonb(OLD), mine);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            PERFORM computed_check_row(TG_TABLE_NAME, to_jsonb(NEW), mine);
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$
"""

#: The tables a worker writes, each guarded by the write check.
GUARDED = (
    "workers",
    "worker_hosts",
    "host_owners",
    "host_moves",
    "operation_journal",
    "journal_messages",
    "host_inventory",
    "instance_migrations",
)

#: Row-level security on the journal: a driver's role reads its own driver's
#: entries only, so a new owner never runs an entry another driver wrote.
_JOURNAL_POLICIES = {
    "operation_journal": "computed_may_write(driver)",
    "journal_messages": "driver IS NULL OR computed_may_write(driver)",
}


def upgrade() -> None:
    op.add_column("operation_journal", sa.Column("driver", sa.String(64), nullable=True))
    op.add_column("journal_messages", sa.Column("driver", sa.String(64), nullable=True))
    op.execute(
        "UPDATE operation_journal SET driver = "
        "(SELECT driver FROM workers WHERE workers.id = operation_journal.worker_id)"
    )
    op.execute(
        "UPDATE journal_messages SET driver = (SELECT driver FROM operation_journal "
        "WHERE operation_journal.message_id = journal_messages.message_id)"
    )
    if op.get_bind().dialect.name == "postgresql":
        _install_postgresql()


#: Each function above is its signature, then its body.
_FUNCTION = "CREATE OR REPLACE FUNCTION {head} SET search_path = {path} AS $$\n{body}"


def _install_postgresql() -> None:
    schema = op.get_bind().execute(sa.text("SELECT current_schema()")).scalar_one()
    # pg_catalog first and pg_temp last: a role that can create objects in
    # some schema or a temporary table cannot shadow what the checks read.
    path = f'pg_catalog, "{schema}", pg_temp'
    fields = {"path": path, "prefix": PREFIX, "start": len(PREFIX) + 1}
    for function in (
        _WRITER_DRIVERS,
        _MAY_WRITE,
        _WORKER_DRIVER,
        _HOST_DRIVERS,
        _FILL_DRIVER,
        _CHECK_ROW,
        _CHECK_WRITE,
    ):
        head, body = function.strip().split("\n", 1)
        op.execute(_FUNCTION.format(head=head, path=path, body=body.format(**fields)))
    for table in ("operation_journal", "journal_messages"):
        # Trigger names order them: the driver is filled before it is checked.
        op.execute(
            f"CREATE TRIGGER computed_1_fill_driver BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION computed_fill_driver()"
        )
    for table in GUARDED:
        op.execute(
            f"CREATE TRIGGER computed_2_check_write BEFORE INSERT OR UPDATE OR DELETE "
            f"ON {table} FOR EACH ROW EXECUTE FUNCTION computed_check_write()"
        )
    for table, visible in _JOURNAL_POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY computed_driver_rows ON {table} USING ({visible}) "
            f"WITH CHECK ({visible})"
        )
