"""The queries of garbage collection (:mod:`origin.gc`), and the locks that make it safe
beside pushes.

Reachability, per repository: the roots are the manifests tags point at, those a tag pointed
at inside the namespace's time-machine window, and manifests pushed less than the grace
period ago (a manifest pushed by digest, an index's children before the index). From the
roots, an index reaches its children and a manifest reaches its referrers (those whose
subject it is). What no root reaches is deleted; so is a repository's link to a blob that no
live manifest there references and that no push has touched for the grace period.

The upload-then-collect race, and why it cannot lose anything:

* A **manifest push** holds the repository's collection lock *shared* from before it checks
  that its blobs and children are linked until it commits (:func:`share_repository`); a
  collection of the repository holds it *exclusively* while it reads what is reachable and
  deletes (:func:`hold_repository`). So a collection sees every push that checked before it,
  and a push that checks after it sees the links it removed (and fails with
  ``MANIFEST_BLOB_UNKNOWN``, pushing nothing that is not there).
* A **link** (an upload's, a mount's, a ``HEAD`` a pushing client makes to skip an upload)
  sets the link's ``touched_at``: a link younger than the grace period is never collected,
  and the delete re-checks it in its own statement.
* A **blob's bytes** go in two steps: a blob no repository links and no manifest references
  is tombstoned; a grace period later its row is deleted and its bytes with it, in one
  transaction that holds the row. Every upload *claims* the blob before it publishes its
  bytes (:meth:`MetadataStore.claim_blob`): a blob with no row or a live one cannot be swept
  within a grace period (the link that follows clears any tombstone); a tombstoned one is
  claimed by a write on its row, so either the claim comes first and the sweep leaves the
  row, or the sweep comes first, its row is gone, and the upload writes the bytes again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from origin.metadata.models import (
    blobs,
    events,
    manifest_references,
    manifests,
    namespace_settings,
    repositories,
    repository_blobs,
    tag_history,
    tags,
)
from origin.metadata.placements import namespace_of

GC_LOCKS = 0x57484743  # "WHGC": the advisory lock space of repositories' collection
_CHUNK = 500  # digests per statement (SQLite binds at most 32,766 parameters)


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (the database keeps UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def share_repository(conn: AsyncConnection, repo_id: int) -> None:
    """Held by a manifest push until its commit, taken before it checks what it references:
    no collection of the repository meanwhile. PostgreSQL: a shared advisory lock (pushes go
    side by side). SQLite: its one write lock, taken by a write (its driver runs reads before
    a transaction's first write outside it, where a collection's commit could pass between
    the check and the insert)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock_shared(:space, :id)"),
            {"space": GC_LOCKS, "id": repo_id},
        )
    else:
        await write_lock(conn, repo_id)


async def write_lock(conn: AsyncConnection, repo_id: int) -> None:
    """SQLite: a write (to the repository's row) takes the one write lock, so the reads after
    it are inside the transaction and see every commit."""
    await conn.execute(
        update(repositories).where(repositories.c.id == repo_id).values(name=repositories.c.name)
    )


async def hold_repository(conn: AsyncConnection, repo_id: int) -> None:
    """Held by a collection of the repository until its commit: no manifest push meanwhile,
    and every push before it committed (so the reads that follow see them)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, :id)"), {"space": GC_LOCKS, "id": repo_id}
        )
    else:
        await write_lock(conn, repo_id)


@dataclass(frozen=True, slots=True)
class Swept:
    """What one collection of a repository deleted."""

    manifests: tuple[str, ...]
    links: int
    history: int
    kept: int  # manifests still reachable


def _chunks(items: Sequence[str | int]) -> list[Sequence[str | int]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


async def window_seconds(conn: AsyncConnection, name: str, default: int) -> int:
    own = await conn.scalar(
        select(namespace_settings.c.time_machine_seconds).where(
            namespace_settings.c.namespace == namespace_of(name)
        )
    )
    return default if own is None else int(own)


@dataclass(frozen=True, slots=True)
class Garbage:
    """What nothing reaches in one repository."""

    manifests: dict[str, int]  # digest: id
    links: list[str]
    history: int  # ended tag states past the window
    kept: int

    def __bool__(self) -> bool:
        return bool(self.manifests or self.links or self.history)


async def find_garbage(
    conn: AsyncConnection,
    repo_id: int,
    name: str,
    now: datetime,
    grace: timedelta,
    default_window: int,
) -> Garbage:
    """What nothing reaches in the repository (read only: a survey, or under the lock)."""
    window = timedelta(seconds=await window_seconds(conn, name, default_window))
    rows = (
        await conn.execute(
            select(
                manifests.c.id,
                manifests.c.digest,
                manifests.c.subject_digest,
                manifests.c.created_at,
            ).where(manifests.c.repository_id == repo_id)
        )
    ).all()
    ids = {row.digest: row.id for row in rows}
    roots = set(
        (
            await conn.execute(
                select(tags.c.manifest_digest).where(tags.c.repository_id == repo_id)
            )
        ).scalars()
    )
    states = (
        await conn.execute(
            select(tag_history.c.manifest_digest, tag_history.c.ended_at).where(
                tag_history.c.repository_id == repo_id
            )
        )
    ).all()
    roots |= {d for d, ended in states if ended is None or utc(ended) >= now - window}
    roots |= {row.digest for row in rows if utc(row.created_at) >= now - grace}
    referrers: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.subject_digest is not None:
            referrers[row.subject_digest].append(row.digest)
    children: dict[int, list[str]] = defaultdict(list)
    child_rows = await conn.execute(
        select(manifest_references.c.manifest_id, manifest_references.c.digest)
        .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
        .where(manifests.c.repository_id == repo_id, manifest_references.c.kind == "manifest")
    )
    for manifest_id, child in child_rows.all():
        children[manifest_id].append(child)
    live: set[str] = set()
    stack = [d for d in roots if d in ids]
    while stack:
        digest = stack.pop()
        if digest in live:
            continue
        live.add(digest)
        stack.extend(d for d in children[ids[digest]] if d in ids)
        stack.extend(referrers.get(digest, ()))
    live_ids = {ids[d] for d in live}
    blob_rows = await conn.execute(
        select(manifest_references.c.manifest_id, manifest_references.c.digest)
        .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
        .where(manifests.c.repository_id == repo_id, manifest_references.c.kind == "blob")
    )
    used = {digest for manifest_id, digest in blob_rows.all() if manifest_id in live_ids}
    linked = (
        await conn.execute(
            select(repository_blobs.c.digest).where(
                repository_blobs.c.repository_id == repo_id,
                repository_blobs.c.touched_at < now - grace,
            )
        )
    ).scalars()
    expired = sum(1 for _, ended in states if ended is not None and utc(ended) < now - window)
    return Garbage(
        {d: ids[d] for d in sorted(set(ids) - live)},
        sorted(set(linked) - used),
        expired,
        len(live),
    )


async def collect_repository(
    conn: AsyncConnection,
    repo_id: int,
    name: str,
    now: datetime,
    grace: timedelta,
    default_window: int,
) -> Swept:
    """Delete what nothing reaches in one repository (inside the caller's transaction, which
    holds the repository's collection lock from here to its commit)."""
    await hold_repository(conn, repo_id)
    garbage = await find_garbage(conn, repo_id, name, now, grace, default_window)
    window = timedelta(seconds=await window_seconds(conn, name, default_window))
    dead = list(garbage.manifests)
    for chunk in _chunks(list(garbage.manifests.values())):
        await conn.execute(delete(manifests).where(manifests.c.id.in_(chunk)))
    if dead:
        await conn.execute(
            insert(events),
            [
                {"repository": name, "kind": "delete", "digest": d, "tag": None, "at": now}
                for d in dead
            ],
        )
    links = 0
    for chunk in _chunks(garbage.links):
        result = await conn.execute(
            delete(repository_blobs).where(
                repository_blobs.c.repository_id == repo_id,
                repository_blobs.c.digest.in_(chunk),
                repository_blobs.c.touched_at < now - grace,  # re-checked as it deletes
            )
        )
        links += result.rowcount
    history = 0
    if garbage.history:
        result = await conn.execute(
            delete(tag_history).where(
                tag_history.c.repository_id == repo_id, tag_history.c.ended_at < now - window
            )
        )
        history = result.rowcount
    return Swept(tuple(dead), links, history, garbage.kept)


def _unreachable() -> list[ColumnElement[bool]]:
    """A blob no repository links and no manifest references."""
    return [
        ~exists().where(repository_blobs.c.digest == blobs.c.digest),
        ~exists().where(manifest_references.c.digest == blobs.c.digest),
    ]


async def tombstone(conn: AsyncConnection, now: datetime, grace: timedelta, limit: int) -> int:
    """Mark up to ``limit`` unreachable blobs untouched for the grace period; a tombstone a
    link raced past is lifted. How many were marked."""
    raced = list(
        (
            await conn.execute(
                select(blobs.c.digest).where(
                    blobs.c.tombstoned_at.is_not(None),
                    exists().where(repository_blobs.c.digest == blobs.c.digest),
                )
            )
        ).scalars()
    )
    for chunk in _chunks(raced):  # rare: read first, so a quiet pass writes nothing
        await conn.execute(
            update(blobs).where(blobs.c.digest.in_(chunk)).values(tombstoned_at=None)
        )
    found = list(
        (
            await conn.execute(
                select(blobs.c.digest)
                .where(
                    blobs.c.tombstoned_at.is_(None),
                    blobs.c.touched_at < now - grace,
                    *_unreachable(),
                )
                .limit(limit)
            )
        ).scalars()
    )
    marked = 0
    for chunk in _chunks(found):
        result = await conn.execute(
            update(blobs)
            .where(
                blobs.c.digest.in_(chunk),
                blobs.c.tombstoned_at.is_(None),
                blobs.c.touched_at < now - grace,  # a claim since: not this time
                *_unreachable(),
            )
            .values(tombstoned_at=now)
        )
        marked += result.rowcount
    return marked


async def sweepable(
    conn: AsyncConnection, now: datetime, grace: timedelta, limit: int
) -> list[str]:
    """Blobs tombstoned more than the grace period ago."""
    rows = await conn.execute(
        select(blobs.c.digest).where(blobs.c.tombstoned_at < now - grace).limit(limit)
    )
    return list(rows.scalars())


async def take(
    conn: AsyncConnection, digests: Sequence[str], now: datetime, grace: timedelta
) -> dict[str, int]:
    """Delete the rows of those tombstoned blobs still due (their sizes, by digest), holding
    them until the caller's transaction ends: the caller deletes the bytes before it commits.
    A blob a claim or a link brought back is left out. (Placements and queued copies go with
    the rows.)"""
    rows = await conn.execute(
        delete(blobs)
        .where(
            blobs.c.digest.in_(digests),
            blobs.c.tombstoned_at < now - grace,
            *_unreachable(),
        )
        .returning(blobs.c.digest, blobs.c.size)
    )
    return {row.digest: int(row.size) for row in rows}


async def pending(conn: AsyncConnection) -> tuple[int, int]:
    """Blobs tombstoned, and their bytes."""
    row = (
        await conn.execute(
            select(func.count(), func.sum(blobs.c.size)).where(blobs.c.tombstoned_at.is_not(None))
        )
    ).one()
    return int(row[0]), int(row[1] or 0)
