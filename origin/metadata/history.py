"""Reading and trimming the time machine (``tag_history``), and each namespace's window.

Writes of tag states happen with the tag changes themselves, in :mod:`origin.metadata.store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from origin.metadata.db import upsert
from origin.metadata.models import manifests, namespace_settings, repositories, tag_history


@dataclass(frozen=True, slots=True)
class TagState:
    digest: str
    started_at: datetime
    ended_at: datetime | None  # None: the tag points there now
    held: bool  # the repository still holds the manifest


def _utc(moment: datetime) -> datetime:
    """SQLite hands back times without their zone; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class HistoryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def states(self, name: str, tag: str, limit: int) -> list[TagState] | None:
        """The tag's states, newest first (None: no such repository)."""
        held = (
            select(manifests.c.id)
            .where(
                manifests.c.repository_id == tag_history.c.repository_id,
                manifests.c.digest == tag_history.c.manifest_digest,
            )
            .exists()
        )
        query = (
            select(
                tag_history.c.manifest_digest,
                tag_history.c.started_at,
                tag_history.c.ended_at,
                held,
            )
            .join(repositories, repositories.c.id == tag_history.c.repository_id)
            .where(repositories.c.name == name, tag_history.c.tag == tag)
            .order_by(tag_history.c.id.desc())  # the order of the changes, whatever the clocks
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            exists = await conn.scalar(select(repositories.c.id).where(repositories.c.name == name))
            if exists is None:
                return None
            rows = (await conn.execute(query)).all()
        return [
            TagState(row[0], _utc(row[1]), row[2] and _utc(row[2]), bool(row[3])) for row in rows
        ]

    async def expire(self, name: str, tag: str | None, before: datetime) -> int:
        """Forget ended states of a tag (every tag: None) that ended before ``before``."""
        query = delete(tag_history).where(
            tag_history.c.ended_at.is_not(None),
            tag_history.c.ended_at < before,
            tag_history.c.repository_id.in_(
                select(repositories.c.id).where(repositories.c.name == name)
            ),
        )
        if tag is not None:
            query = query.where(tag_history.c.tag == tag)
        async with self.engine.begin() as conn:
            return (await conn.execute(query)).rowcount

    async def window(self, namespace: str) -> int | None:
        """The namespace's own window in seconds (None: the origin's default)."""
        query = select(namespace_settings.c.time_machine_seconds).where(
            namespace_settings.c.namespace == namespace
        )
        async with self.engine.connect() as conn:
            return await conn.scalar(query)

    async def set_window(self, namespace: str, seconds: int | None) -> None:
        await self._set(namespace, "time_machine_seconds", seconds)

    async def set_quota(self, namespace: str, quota_bytes: int | None) -> None:
        await self._set(namespace, "quota_bytes", quota_bytes)

    async def _set(self, namespace: str, setting: str, value: int | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                upsert(conn, namespace_settings)
                .values(namespace=namespace, **{setting: value})
                .on_conflict_do_update(index_elements=["namespace"], set_={setting: value})
            )
