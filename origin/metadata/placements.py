"""Where blob bytes are, and the durable queue of copies still to make (geo-replication).

``blob_placements`` says which storage locations hold a blob; ``placement_queue`` holds the
copies its namespaces still need. A blob's placement and its queued copies are written in the
transaction that links it to a repository, so no blob becomes visible without its copies
being queued, and the copier that dies mid-way leaves its row to the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from origin.metadata.db import upsert
from origin.metadata.models import (
    blob_placements,
    blobs,
    namespace_locations,
    placement_queue,
    repositories,
    repository_blobs,
)


def namespace_of(repository: str) -> str:
    return repository.split("/", 1)[0]


async def record(conn: AsyncConnection, digest: str, location: str) -> None:
    """The blob's bytes are (now) at ``location``: place it, drop its queued copy there."""
    await conn.execute(
        upsert(conn, blob_placements)
        .values(digest=digest, location=location)
        .on_conflict_do_nothing()
    )
    await conn.execute(
        delete(placement_queue).where(
            placement_queue.c.digest == digest, placement_queue.c.location == location
        )
    )


async def wanted(conn: AsyncConnection, namespace: str, defaults: Sequence[str]) -> list[str]:
    query = select(namespace_locations.c.location).where(
        namespace_locations.c.namespace == namespace
    )
    chosen = list((await conn.execute(query)).scalars())
    return chosen or list(defaults)


async def enqueue_missing(
    conn: AsyncConnection, digest: str, namespace: str, defaults: Sequence[str]
) -> int:
    """Queue a copy of the blob to each location ``namespace`` must live in that lacks it."""
    want = await wanted(conn, namespace, defaults)
    have = set(
        (
            await conn.execute(
                select(blob_placements.c.location).where(blob_placements.c.digest == digest)
            )
        ).scalars()
    )
    missing = [location for location in want if location not in have]
    for location in missing:
        await conn.execute(
            upsert(conn, placement_queue)
            .values(digest=digest, location=location)
            .on_conflict_do_nothing()
        )
    return len(missing)


@dataclass(frozen=True, slots=True)
class Copy:
    digest: str
    location: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Placement:
    digest: str
    size: int
    locations: list[str]
    pending: list[str]


class Placements:
    def __init__(self, engine: AsyncEngine, defaults: Sequence[str]) -> None:
        self.engine = engine
        self.defaults = tuple(defaults)

    async def of(self, digest: str) -> Placement | None:
        async with self.engine.connect() as conn:
            size = (
                await conn.execute(select(blobs.c.size).where(blobs.c.digest == digest))
            ).scalar_one_or_none()
            if size is None:
                return None
            here = await conn.execute(
                select(blob_placements.c.location).where(blob_placements.c.digest == digest)
            )
            queued = await conn.execute(
                select(placement_queue.c.location).where(placement_queue.c.digest == digest)
            )
            return Placement(digest, size, sorted(here.scalars()), sorted(queued.scalars()))

    async def due(self, limit: int, exclude: Sequence[tuple[str, str]] = ()) -> list[Copy]:
        query = (
            select(placement_queue.c.digest, placement_queue.c.location, placement_queue.c.attempts)
            .where(placement_queue.c.due_at <= datetime.now(UTC))
            .order_by(placement_queue.c.due_at)
            .limit(limit + len(exclude))
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        skip = set(exclude)
        return [Copy(*row) for row in rows if (row[0], row[1]) not in skip][:limit]

    async def done(self, digest: str, location: str) -> None:
        async with self.engine.begin() as conn:
            await record(conn, digest, location)

    async def failed(self, copy: Copy, error: str, retry_in: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(placement_queue)
                .where(
                    placement_queue.c.digest == copy.digest,
                    placement_queue.c.location == copy.location,
                )
                .values(
                    attempts=placement_queue.c.attempts + 1,
                    due_at=datetime.now(UTC) + timedelta(seconds=retry_in),
                    error=error[:255],
                )
            )

    async def namespaces_of(self, digest: str) -> list[str]:
        """The namespaces whose repositories hold the blob."""
        query = (
            select(repositories.c.name)
            .join(repository_blobs, repository_blobs.c.repository_id == repositories.c.id)
            .where(repository_blobs.c.digest == digest)
        )
        async with self.engine.connect() as conn:
            return sorted({namespace_of(n) for n in (await conn.execute(query)).scalars()})

    async def pending(self) -> dict[str, int]:
        query = select(placement_queue.c.location, func.count()).group_by(
            placement_queue.c.location
        )
        async with self.engine.connect() as conn:
            return {str(row[0]): int(row[1]) for row in (await conn.execute(query)).all()}

    async def namespace(self, namespace: str) -> tuple[list[str], bool]:
        """The locations a namespace lives in, and whether they were chosen for it."""
        async with self.engine.connect() as conn:
            chosen = await wanted(conn, namespace, ())
        return (chosen, True) if chosen else (list(self.defaults), False)

    async def place_namespace(self, namespace: str, locations: Sequence[str]) -> int:
        """Set the namespace's locations (empty: the defaults) and queue the copies its
        blobs now need; how many were queued."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(namespace_locations).where(namespace_locations.c.namespace == namespace)
            )
            for location in dict.fromkeys(locations):
                await conn.execute(
                    namespace_locations.insert().values(namespace=namespace, location=location)
                )
            return await self._enqueue_for(conn, namespace)

    async def _enqueue_for(self, conn: AsyncConnection, namespace: str | None) -> int:
        query = select(repositories.c.name, repository_blobs.c.digest).join(
            repository_blobs, repository_blobs.c.repository_id == repositories.c.id
        )
        if namespace is not None:
            query = query.where(
                (repositories.c.name == namespace) | repositories.c.name.startswith(f"{namespace}/")
            )
        queued = 0
        for name, digest in (await conn.execute(query)).all():
            queued += await enqueue_missing(conn, digest, namespace_of(name), self.defaults)
        return queued

    async def backfill(self, present: dict[str, list[str]]) -> int:
        """Record where blobs already are (``present``: digest -> locations, as found by
        looking) and queue every copy missing; how many copies were queued."""
        async with self.engine.begin() as conn:
            known = set((await conn.execute(select(blobs.c.digest))).scalars())
            for digest, locations in present.items():
                if digest in known:
                    for location in locations:
                        await record(conn, digest, location)
            return await self._enqueue_for(conn, None)

    async def unplaced(self) -> dict[str, int]:
        """Blobs no location is recorded for (pushed before placements were kept), with
        their sizes."""
        query = select(blobs.c.digest, blobs.c.size).where(
            ~select(blob_placements.c.digest)
            .where(blob_placements.c.digest == blobs.c.digest)
            .exists()
        )
        async with self.engine.connect() as conn:
            return {str(row[0]): int(row[1]) for row in (await conn.execute(query)).all()}
