"""Alembic environment: runs on the connection the origin hands over at start."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from origin.metadata.models import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through origin.metadata.db.migrate()")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
