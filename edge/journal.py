"""What an edge owes the origin: the pushes it accepted, in order, until the origin has them.

An SQLite database at ``<data_dir>/journal.db`` (WAL, ``synchronous=FULL``): a push is
acknowledged only once its row is on disk, so a ``kill -9`` at any moment loses nothing
acknowledged. It holds

- ``uploads``: the edge's blob upload sessions (:class:`ocicore.uploads.Sessions`);
- ``pushed``: blobs pushed here, kept from eviction (pinned) until the origin has them;
- ``carried``: which repositories at the origin hold which of them now (to mount from);
- ``items``: manifests pushed here, in push order (``seq``), with the tag they were pushed
  to, the digest that tag had when the push was accepted (``base``: what a conflict is judged
  against), the blobs they name and who pushed them. The replicator carries them in ``seq``
  order per repository and marks them done; replays are idempotent.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ocicore.sqlite import create_engine
from ocicore.uploads import Upload

SCHEMA = 1
_meta = MetaData()
_uploads = Table(
    "uploads",
    _meta,
    Column("id", String(36), primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("offset", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
)
_pushed = Table(
    "pushed",
    _meta,
    Column("repository", String(255), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("at", Float, nullable=False),
)
_carried = Table(  # blobs the origin is known to hold, by repository: where to mount from
    "carried",
    _meta,
    Column("digest", String(160), primary_key=True),
    Column("repository", String(255), primary_key=True),
)
_items = Table(
    "items",
    _meta,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(255), nullable=False, index=True),
    Column("digest", String(160), nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("body", LargeBinary, nullable=False),  # durable with the row: what is carried
    Column("tag", String(128)),
    Column("base", String(160)),  # the tag's digest when the push was accepted; "" for none
    Column("blobs", JSON, nullable=False),
    Column("subject", String(255), nullable=False),
    Column("at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False, default=0.0),
    Column("done_at", Float),
    Column("outcome", String(32)),  # replicated, conflict, failed
    Column("error", Text),
)
_version = Table("schema", _meta, Column("version", Integer, primary_key=True))


@dataclass(frozen=True, slots=True)
class Item:
    seq: int
    repository: str
    digest: str
    media_type: str
    body: bytes
    tag: str | None
    base: str | None  # None: unknown when accepted (the origin was unreachable)
    blobs: tuple[str, ...]
    subject: str
    at: float
    attempts: int


class Journal:
    """The edge's durable record of pushes; also the store of its upload sessions."""

    def __init__(self, path: Path) -> None:
        self.engine = create_engine(f"sqlite+aiosqlite:///{path}")
        self._waiting: dict[int, float] = {}  # pending items: seq -> when accepted

    @property
    def depth(self) -> int:
        """Pushes the origin does not have yet."""
        return len(self._waiting)

    def oldest_age(self) -> float:
        """Seconds since the oldest of them was accepted (0: none)."""
        return time.time() - min(self._waiting.values()) if self._waiting else 0.0

    async def open(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_meta.create_all)
            found = (await conn.execute(select(_version.c.version))).scalar_one_or_none()
            if found is None:
                await conn.execute(insert(_version).values(version=SCHEMA))
            elif found != SCHEMA:
                raise RuntimeError(f"journal schema {found}, this edge knows {SCHEMA}")
            # An upload session does not outlive the edge (its file is gone with the cache's
            # temporary files): its client is told BLOB_UPLOAD_UNKNOWN and starts again.
            await conn.execute(delete(_uploads))
        self._waiting = {item.seq: item.at for item in await self.pending()}

    async def close(self) -> None:
        await self.engine.dispose()

    # -- upload sessions (ocicore.uploads.Sessions) ------------------------------------------
    async def create_upload(self, upload_id: str, name: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(_uploads).values(
                    id=upload_id, repository=name, offset=0, created_at=datetime.now(UTC)
                )
            )

    async def get_upload(self, upload_id: str) -> Upload | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(_uploads.c.id, _uploads.c.repository, _uploads.c.offset).where(
                        _uploads.c.id == upload_id
                    )
                )
            ).one_or_none()
        return Upload(row.id, row.repository, row.offset) if row else None

    async def advance_upload(self, upload_id: str, old: int, new: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(_uploads)
                .where(_uploads.c.id == upload_id, _uploads.c.offset == old)
                .values(offset=new)
            )
            return result.rowcount == 1

    @asynccontextmanager
    async def exclusive(self, upload_id: str) -> AsyncIterator[None]:
        """One edge process owns its journal: the upload service's own lock suffices."""
        yield

    async def delete_upload(self, upload_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(_uploads).where(_uploads.c.id == upload_id))
            return result.rowcount == 1

    async def uploads_before(self, cutoff: datetime) -> list[str]:
        naive = cutoff.astimezone(UTC).replace(tzinfo=None)
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(_uploads.c.id).where(_uploads.c.created_at < naive))
            return list(rows.scalars())

    async def upload_ids(self) -> set[str]:
        async with self.engine.connect() as conn:
            return set((await conn.execute(select(_uploads.c.id))).scalars())

    # -- pushes --------------------------------------------------------------------------------
    async def blob_pushed(
        self, name: str, digest: str, size: int, finished_upload: str | None = None
    ) -> None:
        """A blob pushed here (its session, if any, closed in the same transaction)."""
        async with self.engine.begin() as conn:
            if finished_upload is not None:
                await conn.execute(delete(_uploads).where(_uploads.c.id == finished_upload))
            await conn.execute(
                sqlite_insert(_pushed)
                .values(repository=name, digest=digest, size=size, at=time.time())
                .on_conflict_do_nothing()
            )

    async def pushed_blobs(self, name: str) -> set[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(_pushed.c.digest).where(_pushed.c.repository == name))
            return set(rows.scalars())

    async def expire_pushed(self, before: float) -> list[str]:
        """Forget blobs pushed before ``before`` that no pending push names (their uploads
        were abandoned: no manifest came); those that nothing else keeps now (to unpin)."""
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(select(_items.c.blobs).where(_items.c.done_at.is_(None)))
            ).scalars()
            named = {d for blobs in rows for d in _blob_list(blobs)}
            old = (
                set(
                    (
                        await conn.execute(select(_pushed.c.digest).where(_pushed.c.at < before))
                    ).scalars()
                )
                - named
            )
            if old:
                await conn.execute(
                    delete(_pushed).where(_pushed.c.at < before, _pushed.c.digest.in_(old))
                )
            left = set((await conn.execute(select(_pushed.c.digest))).scalars())
        return sorted(old - left)

    async def kept(self) -> set[str]:
        """Blobs that must stay at the edge: pushed here, or named by a pending push (the
        journal is their durable record; the cache's pins are re-made from it at start)."""
        async with self.engine.connect() as conn:
            pushed = set((await conn.execute(select(_pushed.c.digest))).scalars())
            rows = (
                await conn.execute(select(_items.c.blobs).where(_items.c.done_at.is_(None)))
            ).scalars()
        return pushed | {d for blobs in rows for d in _blob_list(blobs)}

    async def carried_to(self, digest: str) -> list[str]:
        """The repositories this edge carried ``digest`` to at the origin (mount sources)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(_carried.c.repository).where(_carried.c.digest == digest)
            )
            return list(rows.scalars())

    async def manifest_pushed(
        self,
        name: str,
        digest: str,
        media_type: str,
        body: bytes,
        tag: str | None,
        base: str | None,
        blobs: Iterable[str],
        subject: str,
    ) -> int:
        """Record a manifest to carry to the origin; its sequence number."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(_items).values(
                    repository=name,
                    digest=digest,
                    media_type=media_type,
                    body=body,
                    tag=tag,
                    base=base,
                    blobs=list(blobs),
                    subject=subject,
                    at=time.time(),
                    attempts=0,
                    next_at=0.0,
                )
            )
            key = result.inserted_primary_key
        assert key is not None
        self._waiting[int(key[0])] = time.time()
        return int(key[0])

    # -- the replicator's side -----------------------------------------------------------------
    async def due(self, now: float, limit: int = 16) -> list[Item]:
        """The first pending item of each repository, if it is due (its retry time came)."""
        heads = (
            select(func.min(_items.c.seq))
            .where(_items.c.done_at.is_(None))
            .group_by(_items.c.repository)
            .scalar_subquery()
        )
        query = (
            select(_items)
            .where(_items.c.seq.in_(heads), _items.c.next_at <= now)
            .order_by(_items.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_item(row) for row in rows]

    async def pending(self) -> list[Item]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(_items).where(_items.c.done_at.is_(None)).order_by(_items.c.seq)
                )
            ).all()
        return [_item(row) for row in rows]

    async def next_due(self) -> float | None:
        """When the earliest pending item may be tried (None: nothing pending)."""
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(func.min(_items.c.next_at)).where(_items.c.done_at.is_(None))
                )
            ).scalar_one_or_none()
        return None if found is None else float(found)

    async def finish(self, seq: int, outcome: str, error: str | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(_items)
                .where(_items.c.seq == seq)
                .values(done_at=time.time(), outcome=outcome, error=error)
            )
        self._waiting.pop(seq, None)

    async def retry(self, seq: int, at: float, error: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(_items)
                .where(_items.c.seq == seq)
                .values(attempts=_items.c.attempts + 1, next_at=at, error=error[:1000])
            )

    async def release(self, name: str, digests: Iterable[str]) -> list[str]:
        """The origin holds these blobs of ``name`` now: forget them; returns those no other
        pending push still names (their pins may go)."""
        wanted = set(digests)
        async with self.engine.begin() as conn:
            if wanted:
                await conn.execute(
                    delete(_pushed).where(
                        _pushed.c.repository == name, _pushed.c.digest.in_(wanted)
                    )
                )
                await conn.execute(
                    sqlite_insert(_carried).on_conflict_do_nothing(),
                    [{"digest": d, "repository": name} for d in wanted],
                )
            rows = (
                await conn.execute(select(_items.c.blobs).where(_items.c.done_at.is_(None)))
            ).scalars()
            still = {d for blobs in rows for d in _blob_list(blobs)}
            left = (await conn.execute(select(_pushed.c.digest))).scalars()
            still |= set(left)
        return sorted(wanted - still)


def _blob_list(value: object) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [str(d) for d in value] if isinstance(value, list) else []


def _item(row: object) -> Item:
    m = row._mapping  # type: ignore[attr-defined]
    return Item(
        m["seq"],
        m["repository"],
        m["digest"],
        m["media_type"],
        bytes(m["body"]),
        m["tag"],
        None if m["base"] is None else m["base"],
        tuple(_blob_list(m["blobs"])),
        m["subject"],
        m["at"],
        m["attempts"],
    )
