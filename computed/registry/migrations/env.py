"""Alembic environment of the registry; run through :func:`computed.registry.migration.upgrade`."""

from __future__ import annotations

from alembic import context

from computed.registry.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
