"""One replica at a time runs the singleton workers (placement copier, upload reaper, audit
retention, signing key rotation), elected through a PostgreSQL advisory lock.

The lock is a session lock held on a connection of its own (with short TCP keepalives, see
:func:`origin.metadata.db.create_lock_engine`): when the replica dies, or loses its database
connection, PostgreSQL releases it and the next replica polling for it (every
``poll_seconds``) takes over. The holder checks its connection as often, and stops its
workers when the connection is gone. Every worker tolerates a short overlap (copies are
verified and idempotent; expiries are idempotent deletes), which the gap between a lost
connection and its detection can cause.

On SQLite there is one origin process per database file, so it always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_log = structlog.get_logger("wharf.origin.leader")

SINGLETON_LOCK = 0x57484153  # "WHAS"


class Leadership:
    def __init__(
        self,
        engine: AsyncEngine,
        registry: CollectorRegistry,
        poll_seconds: float = 1.0,
        key: int = SINGLETON_LOCK,
    ) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.key = key
        self.leading = False
        self._gauge = Gauge(
            "wharf_origin_leader",
            "1 while this replica runs the singleton workers",
            registry=registry,
        )

    def _set(self, leading: bool) -> None:
        self.leading = leading
        self._gauge.set(1 if leading else 0)

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` whenever this replica leads, until cancelled."""
        if self.engine.dialect.name == "sqlite":
            self._set(True)
            await work()
            return
        while True:
            try:
                async with self.engine.connect() as conn:
                    # One connection for asking again and again (and for leading): a replica
                    # waiting its turn costs the server no new session per poll.
                    while not await self._try_lock(conn):  # noqa: ASYNC110 - polling the server
                        await asyncio.sleep(self.poll_seconds)
                    await self._lead(conn, work)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again soon
                _log.warning("leader election failed", error=str(exc) or type(exc).__name__)
            self._set(False)
            await asyncio.sleep(self.poll_seconds)

    async def _try_lock(self, conn: AsyncConnection) -> bool:
        async with asyncio.timeout(self._patience):
            result = await conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
            )
            await conn.commit()  # the session lock outlives the transaction; nothing stays open
        return bool(result.scalar())

    @property
    def _patience(self) -> float:
        """How long the server may take to answer before it counts as gone."""
        return max(5 * self.poll_seconds, 5.0)

    async def _lead(self, conn: AsyncConnection, work: Callable[[], Awaitable[None]]) -> None:
        self._set(True)
        _log.info("leading: singleton workers start")
        task = asyncio.ensure_future(work())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.poll_seconds)
                # Raises once the connection is gone; a server that stopped answering (a
                # failover, a partition) counts as gone too: another replica may lead by now.
                async with asyncio.timeout(self._patience):
                    await conn.execute(text("SELECT 1"))
                    await conn.commit()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            _log.info("no longer leading: singleton workers stopped")
            with contextlib.suppress(Exception):
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                await conn.commit()
