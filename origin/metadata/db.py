"""The database engine: SQLite tuned for durability by default, migrated to head at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ocicore.sqlite import create_engine

__all__ = ["create_engine", "create_lock_engine", "migrate", "upsert"]

MIGRATION_LOCK = 0x57484152  # "WHAR": replicas starting together migrate one at a time

_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending migration (idempotent; safe to run at each start)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(_upgrade)


def upsert(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT with ``on_conflict_do_*`` in the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def create_lock_engine(url: str) -> AsyncEngine | None:
    """PostgreSQL connections for session advisory locks (the leader's, an upload writer's):
    a connection of their own each (never from the pool the requests share, which a lock held
    for a long upload would drain), closed with the lock, and with TCP keepalives short enough
    that the server drops a vanished holder's locks within seconds. None for SQLite (one
    process: nothing to lock against)."""
    if not url.startswith("postgresql"):
        return None
    keepalives = {
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "2",
        "tcp_keepalives_count": "3",
        "application_name": "wharf-locks",
    }
    return create_async_engine(
        url, poolclass=NullPool, connect_args={"server_settings": keepalives}
    )
