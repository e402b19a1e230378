"""Replication policies and the event feed edges follow.

A rule says which repositories (a glob: ``team-a/*``) and tags (a glob, ``*`` by default) the
edges of which regions hold before anyone there asks. Every push, tag move and deletion is an
event (written with the change itself, ``origin.metadata.store``); an edge asks for the events
after its cursor that a rule gives its region, waiting up to ``wait`` seconds for one to come
(a long poll), prefetches what they name and keeps the cursor, so an edge that was away
catches up from where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from origin.metadata.models import events, replication_rules


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    repositories: str
    tags: str
    regions: tuple[str, ...]
    created_by: str
    created_at: datetime

    def covers(self, region: str, repository: str, tag: str | None) -> bool:
        return (
            region in self.regions
            and fnmatchcase(repository, self.repositories)
            and (tag is None or fnmatchcase(tag, self.tags))
        )


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    at: datetime
    repository: str
    kind: str  # "push" | "untag" | "delete" | "blob_delete" (repository "": every one)
    digest: str
    tag: str | None


class Replication:
    def __init__(self, engine: AsyncEngine, max_wait: float = 20.0) -> None:
        """``max_wait``: the longest an edge's request waits for an event."""
        self.engine = engine
        self.max_wait = max_wait
        self._news = asyncio.Event()
        self._closing = False

    def close(self) -> None:
        """The origin is draining: answer waiting edges now, and new ones at once."""
        self._closing = True
        self.changed()

    # -- rules ---------------------------------------------------------------------------------
    async def rules(self) -> list[Rule]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(replication_rules).order_by(replication_rules.c.id))
            return [_rule(row._mapping) for row in rows]

    async def add_rule(
        self, repositories: str, tags: str, regions: list[str], created_by: str
    ) -> Rule:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(replication_rules).values(
                    repositories=repositories,
                    tags=tags,
                    regions=sorted(set(regions)),
                    created_by=created_by,
                )
            )
            assert result.inserted_primary_key is not None
            rule_id = int(result.inserted_primary_key[0])
            row = (
                await conn.execute(
                    select(replication_rules).where(replication_rules.c.id == rule_id)
                )
            ).one()
        self.changed()  # a new rule may give a region events it had passed over: no matter
        return _rule(row._mapping)

    async def delete_rule(self, rule_id: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(replication_rules).where(replication_rules.c.id == rule_id)
            )
            return result.rowcount > 0

    # -- the feed ------------------------------------------------------------------------------
    def changed(self) -> None:
        """Something happened (a push, a tag moved, a deletion): wake the waiting edges."""
        news, self._news = self._news, asyncio.Event()
        news.set()

    async def feed(
        self, region: str, after: int, limit: int, wait: float
    ) -> tuple[list[Event], int]:
        """The events after ``after`` that a rule gives ``region`` (at most ``limit``), and
        the cursor to ask from next; waits up to ``wait`` seconds for one when none is there."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), self.max_wait)
        while True:
            news = self._news
            found, cursor, held_back = await self._scan(region, after, limit)
            if found or self._closing or loop.time() >= deadline:
                return found, cursor
            if cursor > after:  # a page of events for other regions: read on, don't wait
                after = cursor
                continue
            if held_back:  # behind a change still committing: its commit comes in a moment
                await asyncio.sleep(0.05)
                continue
            try:
                async with asyncio.timeout(deadline - loop.time()):
                    await news.wait()
            except TimeoutError:
                pass

    async def _scan(self, region: str, after: int, limit: int) -> tuple[list[Event], int, bool]:
        """Events for ``region`` after ``after``, the cursor past them, and whether events
        were held back behind a gap (:func:`settled`)."""
        rules = [r for r in await self.rules() if region in r.regions]
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(events).where(events.c.seq > after).order_by(events.c.seq).limit(1000)
                )
            ).all()
        visible = len(rows)
        rows = settled(after, rows, datetime.now(UTC))
        held_back = len(rows) < visible
        found: list[Event] = []
        cursor = after
        for row in rows:
            m = row._mapping
            event = Event(m["seq"], m["at"], m["repository"], m["kind"], m["digest"], m["tag"])
            if event.kind in DELETIONS or any(
                r.covers(region, event.repository, event.tag) for r in rules
            ):
                if len(found) == limit:
                    break
                found.append(event)
            cursor = event.seq
        return found, cursor, held_back


# What every region hears of, whatever its rules: an edge may hold what is gone.
DELETIONS = frozenset({"delete", "blob_delete"})
GAP_SECONDS = 10.0  # how long a missing sequence number may be a change still committing


def settled(cursor: int, rows: Sequence[Any], now: datetime) -> list[Any]:
    """The events the cursor may move over: numbers are taken when a change inserts its
    event but become visible when it commits, so a gap may be a change still committing.
    Stop before a gap younger than ``GAP_SECONDS`` (an older one is a change that rolled
    back)."""
    taken = []
    expected = cursor + 1
    for row in rows:
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
        if row.seq != expected and (now - at).total_seconds() < GAP_SECONDS:
            break
        taken.append(row)
        expected = row.seq + 1
    return taken


def _rule(m: object) -> Rule:
    row = dict(m)  # type: ignore[call-overload]
    return Rule(
        row["id"],
        row["repositories"],
        row["tags"],
        tuple(row["regions"]),
        row["created_by"],
        row["created_at"],
    )
