"""Webhooks and their deliveries in the metadata database; the dispatcher's cursor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from origin.metadata.models import events, webhook_cursor, webhook_deliveries, webhooks


@dataclass(frozen=True, slots=True)
class Hook:
    id: int
    namespace: str
    url: str
    events: list[str]
    secret: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    hook_id: int
    event: str
    payload: dict[str, Any]
    state: str
    attempts: int
    due_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- hooks -----------------------------------------------------------------------------
    async def hooks(self, namespace: str | None = None) -> list[Hook]:
        query = select(webhooks).order_by(webhooks.c.id)
        if namespace is not None:
            query = query.where(webhooks.c.namespace == namespace)
        async with self.engine.connect() as conn:
            return [Hook(*row) for row in (await conn.execute(query)).all()]

    async def hook(self, namespace: str, hook_id: int) -> Hook | None:
        found = [h for h in await self.hooks(namespace) if h.id == hook_id]
        return found[0] if found else None

    async def add(
        self, namespace: str, url: str, kinds: Sequence[str], secret: str, created_by: str
    ) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(webhooks).values(
                    namespace=namespace,
                    url=url,
                    events=list(kinds),
                    secret=secret,
                    created_by=created_by,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def remove(self, namespace: str, hook_id: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(webhooks).where(webhooks.c.namespace == namespace, webhooks.c.id == hook_id)
            )
            return result.rowcount > 0

    # -- deliveries ------------------------------------------------------------------------
    async def enqueue(
        self, hook_id: int, event: str, payload: dict[str, Any], due_in: float = 0.0
    ) -> int:
        """Queue a delivery, due in ``due_in`` seconds (later: its caller sends it first)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(webhook_deliveries).values(
                    hook_id=hook_id,
                    event=event,
                    payload=payload,
                    state="pending",
                    due_at=datetime.now(UTC) + timedelta(seconds=due_in),
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def due(self, limit: int, busy: Sequence[int] = ()) -> list[Delivery]:
        """Deliveries due now, oldest first, but none of the hooks in ``busy``."""
        query = (
            select(webhook_deliveries)
            .where(
                webhook_deliveries.c.state == "pending",
                webhook_deliveries.c.due_at <= datetime.now(UTC),
                webhook_deliveries.c.hook_id.not_in(busy),
            )
            .order_by(webhook_deliveries.c.due_at, webhook_deliveries.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [Delivery(*row) for row in (await conn.execute(query)).all()]

    async def delivery(self, delivery_id: int) -> Delivery | None:
        query = select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return Delivery(*row) if row else None

    async def deliveries(self, hook_id: int, limit: int) -> list[Delivery]:
        query = (
            select(webhook_deliveries)
            .where(webhook_deliveries.c.hook_id == hook_id)
            .order_by(webhook_deliveries.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [Delivery(*row) for row in (await conn.execute(query)).all()]

    async def attempted(
        self,
        delivery: Delivery,
        status: int | None,
        error: str | None,
        retry_in: float | None,
    ) -> None:
        """Record an attempt: delivered (no error), to retry in ``retry_in`` s, or failed."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "attempts": webhook_deliveries.c.attempts + 1,
            "last_status": status,
            "last_error": error[:255] if error else None,
        }
        if error is None:
            values |= {"state": "delivered", "finished_at": now}
        elif retry_in is None:
            values |= {"state": "failed", "finished_at": now}
        else:
            values["due_at"] = now + timedelta(seconds=retry_in)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery.id)
                .values(**values)
            )

    async def pending(self) -> int:
        query = select(func.count()).where(webhook_deliveries.c.state == "pending")
        async with self.engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    # -- the feed --------------------------------------------------------------------------
    async def next_events(self, limit: int) -> tuple[int, list[Any]]:
        """The cursor and the events after it."""
        async with self.engine.connect() as conn:
            cursor = int(await conn.scalar(select(webhook_cursor.c.seq)) or 0)
            rows = (
                await conn.execute(
                    select(events).where(events.c.seq > cursor).order_by(events.c.seq).limit(limit)
                )
            ).all()
        return cursor, list(rows)

    async def dispatch(
        self, old: int, new: int, queued: Sequence[tuple[int, str, dict[str, Any]]]
    ) -> bool:
        """Queue deliveries (hook, event, payload) for the events up to ``new`` and move the
        cursor there, in one transaction; false (nothing written) if another dispatcher moved
        it first."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                update(webhook_cursor).where(webhook_cursor.c.seq == old).values(seq=new)
            )
            if moved.rowcount == 0:
                await conn.rollback()
                return False
            if queued:
                await conn.execute(
                    insert(webhook_deliveries),
                    [
                        {"hook_id": h, "event": e, "payload": p, "state": "pending", "due_at": now}
                        for h, e, p in queued
                    ],
                )
            return True
