"""Immutability rules: tags of a namespace (or of one of its repositories) that may be
created but never moved or deleted. Enforced where tags change, in :mod:`origin.metadata.store`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from origin.metadata.models import immutable_tags


@dataclass(frozen=True, slots=True)
class ImmutableRule:
    id: int
    namespace: str
    repository: str | None
    pattern: str
    created_by: str
    created_at: datetime


class ImmutableRules:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def of(self, namespace: str) -> list[ImmutableRule]:
        query = (
            select(immutable_tags)
            .where(immutable_tags.c.namespace == namespace)
            .order_by(immutable_tags.c.id)
        )
        async with self.engine.connect() as conn:
            return [ImmutableRule(*row) for row in (await conn.execute(query)).all()]

    async def add(
        self, namespace: str, repository: str | None, pattern: str, created_by: str
    ) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(immutable_tags).values(
                    namespace=namespace,
                    repository=repository,
                    pattern=pattern,
                    created_by=created_by,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def remove(self, namespace: str, rule_id: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(immutable_tags).where(
                    immutable_tags.c.namespace == namespace, immutable_tags.c.id == rule_id
                )
            )
            return result.rowcount > 0
