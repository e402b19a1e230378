"""The registry model: every query the origin's services make, and nothing else.

Handlers never see SQL; services call these methods with validated names and digests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from sqlalchemy import ColumnElement, Table, and_, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.manifest import Descriptor, Manifest
from ocicore.uploads import Upload, UploadBusy
from origin.metadata import gc, placements
from origin.metadata.db import upsert
from origin.metadata.models import (
    blob_placements,
    blobs,
    events,
    immutable_tags,
    manifest_references,
    manifests,
    namespace_settings,
    repositories,
    repository_blobs,
    tag_history,
    tags,
    uploads,
)
from origin.metadata.placements import namespace_of


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    payload: bytes


def _now() -> datetime:
    """Event times to the microsecond (the database's own clock keeps whole seconds)."""
    return datetime.now(UTC)


class TagImmutable(Exception):
    """The change would move or delete a tag an immutability rule protects."""

    def __init__(self, tag: str, pattern: str) -> None:
        super().__init__(f"tag {tag!r} is immutable (rule {pattern!r})")
        self.tag = tag
        self.pattern = pattern


class MissingReferences(Exception):
    def __init__(self, blobs: Sequence[str], manifests: Sequence[str]) -> None:
        super().__init__(f"missing blobs {list(blobs)}, manifests {list(manifests)}")
        self.blobs = blobs
        self.manifests = manifests


def _linked(name: str, digest: str) -> list[ColumnElement[bool]]:
    """Repository ``name``'s link to ``digest`` (criteria over ``repository_blobs``)."""
    in_repository = select(repositories.c.id).where(repositories.c.name == name)
    return [
        repository_blobs.c.repository_id == in_repository.scalar_subquery(),
        repository_blobs.c.digest == digest,
    ]


UPLOAD_LOCKS = 0x57485550  # "WHUP": the advisory lock space of upload sessions
TAG_LOCKS = 0x57485447  # "WHTG": and of tags


class MetadataStore:
    def __init__(
        self,
        engine: AsyncEngine,
        placement_defaults: Sequence[str] = (),
        locks: AsyncEngine | None = None,
    ) -> None:
        """``placement_defaults``: the storage locations a blob must reach unless its namespace
        says otherwise (empty: one location, nothing to copy); ``locks``: where upload
        sessions are locked across replicas (None: one process)."""
        self.engine = engine
        self.locks = locks
        self.placement_defaults = tuple(placement_defaults)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    # -- repositories ----------------------------------------------------------------------
    async def _repo_id(self, conn: AsyncConnection, name: str) -> int | None:
        row = await conn.execute(select(repositories.c.id).where(repositories.c.name == name))
        return row.scalar_one_or_none()

    async def _ensure_repo(self, conn: AsyncConnection, name: str) -> int:
        stmt = upsert(conn, repositories).values(name=name).on_conflict_do_nothing()
        await conn.execute(stmt)
        repo_id = await self._repo_id(conn, name)
        assert repo_id is not None
        return repo_id

    async def repository_exists(self, name: str) -> bool:
        async with self.engine.connect() as conn:
            return await self._repo_id(conn, name) is not None

    async def list_repositories(self, limit: int, last: str | None) -> list[str]:
        query = select(repositories.c.name).order_by(repositories.c.name).limit(limit)
        if last:
            query = query.where(repositories.c.name > last)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    # -- blobs -----------------------------------------------------------------------------
    async def blob_size(self, name: str, digest: str) -> int | None:
        """Size of ``digest`` if repository ``name`` may see it."""
        query = (
            select(blobs.c.size)
            .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
            .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
            .where(repositories.c.name == name, blobs.c.digest == digest)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def claim_blob(self, digest: str, size: int) -> bool:
        """Before an upload publishes ``digest``'s bytes: whether they must be written even if
        the store seems to hold them (collection may be deleting them).

        A blob already known and not tombstoned takes a read and no write: no sweep can delete
        it within a grace period (a row is due a grace after its tombstone), and the link that
        follows clears any tombstone. A new blob gets its row now, so that bytes a crash
        leaves unlinked are still collected. A tombstoned one is claimed by a write that waits
        for a sweep holding its row: its tombstone is lifted (or, swept, the row made again),
        its old placements forgotten, and True: write the bytes again."""
        async with self.engine.connect() as conn:
            known = (
                await conn.execute(select(blobs.c.tombstoned_at).where(blobs.c.digest == digest))
            ).one_or_none()
        if known is not None and known.tombstoned_at is None:
            return False
        now = _now()
        async with self.engine.begin() as conn:
            claimed = await conn.scalar(
                update(blobs)
                .where(blobs.c.digest == digest)
                .values(touched_at=now, tombstoned_at=None)
                .returning(blobs.c.digest)
            )
            if claimed is None:  # new, or swept meanwhile
                await conn.execute(
                    upsert(conn, blobs)
                    .values(digest=digest, size=size, touched_at=now)
                    .on_conflict_do_nothing()
                )
            if known is None:
                return False
            await conn.execute(delete(blob_placements).where(blob_placements.c.digest == digest))
            return True

    async def link_blob(
        self,
        name: str,
        digest: str,
        size: int,
        finished_upload: str | None = None,
        stored_at: str | None = None,
    ) -> None:
        """Make the blob visible in the repository, closing the upload it came from (if any)
        in the same transaction; ``stored_at``: the location its bytes were just written to.
        The copies the repository's namespace needs are queued in the same transaction."""
        async with self.engine.begin() as conn:
            await self._check_quota(conn, name, digest, size)
            if finished_upload is not None:
                await conn.execute(delete(uploads).where(uploads.c.id == finished_upload))
            now = _now()
            await conn.execute(
                upsert(conn, blobs)
                .values(digest=digest, size=size, touched_at=now)
                .on_conflict_do_update(
                    index_elements=["digest"], set_={"touched_at": now, "tombstoned_at": None}
                )
            )
            await self._link(conn, name, digest, now, stored_at)

    async def mount_blob(self, name: str, digest: str, source: str) -> int | None:
        """Link a blob repository ``source`` holds into ``name`` (its size); None when
        ``source`` does not hold it, or collection is about to delete its bytes."""
        async with self.engine.begin() as conn:
            held = await conn.scalar(select(func.count()).where(*_linked(source, digest)))
            if not held:
                return None
            now = _now()
            row = (
                await conn.execute(
                    update(blobs)
                    .where(blobs.c.digest == digest, blobs.c.tombstoned_at.is_(None))
                    .values(touched_at=now)
                    .returning(blobs.c.size)
                )
            ).one_or_none()
            if row is None:
                return None
            await self._check_quota(conn, name, digest, row.size)
            await self._link(conn, name, digest, now, None)
            return int(row.size)

    async def _link(
        self, conn: AsyncConnection, name: str, digest: str, now: datetime, stored_at: str | None
    ) -> None:
        repo_id = await self._ensure_repo(conn, name)
        await conn.execute(
            upsert(conn, repository_blobs)
            .values(repository_id=repo_id, digest=digest, touched_at=now)
            .on_conflict_do_update(
                index_elements=["repository_id", "digest"], set_={"touched_at": now}
            )
        )
        if stored_at is not None:
            await placements.record(conn, digest, stored_at)
        if self.placement_defaults:
            await placements.enqueue_missing(
                conn, digest, placements.namespace_of(name), self.placement_defaults
            )

    async def touch_link(self, name: str, digest: str, older_than: datetime) -> None:
        """A pushing client asked for the blob (and will not upload it): keep the link out of
        collection's reach for another grace period, if it was last touched before
        ``older_than``."""
        stale = [*_linked(name, digest), repository_blobs.c.touched_at < older_than]
        async with self.engine.connect() as conn:  # a read first: most asks change nothing
            if not await conn.scalar(select(func.count()).where(*stale)):
                return
        async with self.engine.begin() as conn:
            await conn.execute(update(repository_blobs).where(*stale).values(touched_at=_now()))

    async def usage(self, namespace: str, conn: AsyncConnection | None = None) -> int:
        """Bytes of the distinct blobs the namespace's repositories hold."""
        held = (
            select(repository_blobs.c.digest)
            .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
            .where(
                (repositories.c.name == namespace)
                | repositories.c.name.startswith(f"{namespace}/", autoescape=True)
            )
        )
        query = select(func.coalesce(func.sum(blobs.c.size), 0)).where(blobs.c.digest.in_(held))
        if conn is not None:
            return int(await conn.scalar(query) or 0)
        async with self.engine.connect() as own:
            return int(await own.scalar(query) or 0)

    async def quota(self, namespace: str, conn: AsyncConnection | None = None) -> int | None:
        query = select(namespace_settings.c.quota_bytes).where(
            namespace_settings.c.namespace == namespace
        )
        if conn is not None:
            return await conn.scalar(query)
        async with self.engine.connect() as own:
            return await own.scalar(query)

    async def _check_quota(
        self, conn: AsyncConnection, name: str, digest: str | None, size: int
    ) -> None:
        """Refuse (403 DENIED) what would take the namespace past its quota: a blob it does not
        hold yet (``digest``), or with None, anything more once it is full."""
        namespace = namespace_of(name)
        # The settings row stays locked to the commit: pushes into a namespace with a quota
        # count their bytes one after the other (PostgreSQL; SQLite has one writer anyway).
        quota = await conn.scalar(
            select(namespace_settings.c.quota_bytes)
            .where(namespace_settings.c.namespace == namespace)
            .with_for_update()
        )
        if quota is None:
            return
        used = await self.usage(namespace, conn)
        if digest is not None and size:
            held = await conn.scalar(
                select(func.count())
                .select_from(repository_blobs.join(repositories))
                .where(
                    repository_blobs.c.digest == digest,
                    (repositories.c.name == namespace)
                    | repositories.c.name.startswith(f"{namespace}/", autoescape=True),
                )
            )
            if held:
                return
        if used + size > quota or (digest is None and used >= quota):
            raise OCIError(
                ErrorCode.DENIED,
                {"namespace": namespace, "used_bytes": used, "quota_bytes": quota},
                message=f"namespace {namespace} is over its quota ({used} of {quota} bytes used)",
            )

    async def placements(self, digest: str) -> list[str]:
        """The locations holding the blob's bytes."""
        query = select(blob_placements.c.location).where(blob_placements.c.digest == digest)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def unlink_blob(self, name: str, digest: str) -> bool:
        async with self.engine.begin() as conn:
            repo_id = await self._repo_id(conn, name)
            if repo_id is None:
                return False
            result = await conn.execute(
                delete(repository_blobs).where(
                    repository_blobs.c.repository_id == repo_id,
                    repository_blobs.c.digest == digest,
                )
            )
            return result.rowcount > 0

    # -- uploads ---------------------------------------------------------------------------
    async def create_upload(self, upload_id: str, name: str) -> None:
        async with self.engine.begin() as conn:
            await self._check_quota(conn, name, None, 0)
            await conn.execute(insert(uploads).values(id=upload_id, repository=name, offset=0))

    async def get_upload(self, upload_id: str) -> Upload | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(uploads.c.id, uploads.c.repository, uploads.c.offset).where(
                        uploads.c.id == upload_id
                    )
                )
            ).one_or_none()
        return Upload(row.id, row.repository, row.offset) if row else None

    async def advance_upload(self, upload_id: str, old: int, new: int) -> bool:
        """Record ``new`` as the upload's offset if it is still ``old`` (false otherwise)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id, uploads.c.offset == old)
                .values(offset=new)
            )
            return result.rowcount == 1

    @asynccontextmanager
    async def exclusive(self, upload_id: str, space: int = UPLOAD_LOCKS) -> AsyncIterator[None]:
        """Across replicas, one writer per upload session (or one holder of another name in
        another lock ``space``): a PostgreSQL session advisory lock on a connection of its own
        (:func:`create_lock_engine`), released with it if the replica dies; raises
        :class:`UploadBusy` when another holds it. SQLite has one process, whose own lock
        suffices. (Not through a pooler in transaction mode, such as PgBouncer's: session
        locks need the session.)"""
        if self.locks is None:
            yield
            return
        key = {"space": space, "id": upload_id}
        async with self.locks.connect() as conn:
            taken = await conn.scalar(
                text("SELECT pg_try_advisory_lock(:space, hashtext(:id))"), key
            )
            await conn.commit()
            if not taken:
                raise UploadBusy(upload_id)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # a lost connection has dropped it
                    await conn.execute(
                        text("SELECT pg_advisory_unlock(:space, hashtext(:id))"), key
                    )
                    await conn.commit()

    async def delete_upload(self, upload_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(uploads).where(uploads.c.id == upload_id))
            return result.rowcount == 1

    async def uploads_before(self, cutoff: datetime) -> list[str]:
        """Ids of upload sessions opened before ``cutoff``."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(uploads.c.id).where(uploads.c.created_at < cutoff))
            return list(rows.scalars())

    async def upload_ids(self) -> set[str]:
        async with self.engine.connect() as conn:
            return set((await conn.execute(select(uploads.c.id))).scalars())

    async def count_uploads(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(uploads))).scalar_one()

    # -- manifests -------------------------------------------------------------------------
    @staticmethod
    async def _absent(
        conn: AsyncConnection, table: Table, repo_id: int, wanted: set[str]
    ) -> list[str]:
        """Which of ``wanted`` digests ``table`` lacks for the repository, sorted."""
        if not wanted:
            return []
        query = select(table.c.digest).where(
            table.c.repository_id == repo_id, table.c.digest.in_(wanted)
        )
        return sorted(wanted - set((await conn.execute(query)).scalars()))

    async def _missing(
        self, conn: AsyncConnection, repo_id: int, manifest: Manifest
    ) -> tuple[list[str], list[str]]:
        blobs_wanted = {str(d.digest) for d in manifest.blobs if d.distributable}
        children_wanted = {str(d.digest) for d in manifest.children}
        return (
            await self._absent(conn, repository_blobs, repo_id, blobs_wanted),
            await self._absent(conn, manifests, repo_id, children_wanted),
        )

    async def put_manifest(self, name: str, manifest: Manifest, tag: str | None) -> None:
        """Store ``manifest`` (and point ``tag`` at it) once everything it references exists.

        Raises :class:`MissingReferences` and writes nothing when a blob or child is missing.
        """
        digest = str(manifest.digest)
        async with self.engine.begin() as conn:
            repo_id = await self._repo_id(conn, name)
            if repo_id is None:
                if manifest.children or any(d.distributable for d in manifest.blobs):
                    raise MissingReferences(
                        [str(d.digest) for d in manifest.blobs if d.distributable],
                        [str(d.digest) for d in manifest.children],
                    )
                repo_id = await self._ensure_repo(conn, name)
            # Collection of the repository waits for this push's commit (origin.metadata.gc).
            await gc.share_repository(conn, repo_id)
            missing_blobs, missing_children = await self._missing(conn, repo_id, manifest)
            if missing_blobs or missing_children:
                raise MissingReferences(missing_blobs, missing_children)
            existing = (
                await conn.execute(
                    select(manifests.c.id).where(
                        manifests.c.repository_id == repo_id, manifests.c.digest == digest
                    )
                )
            ).scalar_one_or_none()
            if existing is None:
                await self._insert_manifest(conn, repo_id, manifest)
            if tag is not None:
                # From here to the commit no other change of this tag runs: where it points,
                # whether this moves it, its history and its feed event are read and written
                # in the order the changes happen.
                await self._lock_tag(conn, repo_id, tag)
            previous = (
                await conn.scalar(
                    select(tags.c.manifest_digest).where(
                        tags.c.repository_id == repo_id, tags.c.name == tag
                    )
                )
                if tag is not None
                else None
            )
            moved = tag is not None and digest != previous
            if moved and previous is not None:
                await self._check_mutable(conn, name, [tag])
            if tag is not None:
                await self._point(conn, repo_id, tag, digest, moved)
            if existing is None or moved:
                await conn.execute(
                    insert(events).values(
                        repository=name, kind="push", digest=digest, tag=tag, at=_now()
                    )
                )

    @staticmethod
    async def _lock_tag(conn: AsyncConnection, repo_id: int, tag: str) -> None:
        """Hold the tag (existing or not) until the transaction ends. PostgreSQL: a
        transaction advisory lock; SQLite: its one write lock (its driver runs the reads before
        a transaction's first write outside it, so the write comes first)."""
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
                {"space": TAG_LOCKS, "key": f"{repo_id}:{tag}"},
            )
        else:
            await gc.write_lock(conn, repo_id)

    async def _check_mutable(
        self, conn: AsyncConnection, name: str, names: Sequence[str | None]
    ) -> None:
        """Raise :class:`TagImmutable` if a rule of the repository's namespace covers one of
        the tags ``names`` (about to move or go)."""
        wanted = [n for n in names if n]
        if not wanted:
            return
        rules = await conn.execute(
            select(immutable_tags.c.pattern).where(
                immutable_tags.c.namespace == namespace_of(name),
                immutable_tags.c.repository.is_(None) | (immutable_tags.c.repository == name),
            )
        )
        for (pattern,) in rules.all():
            for tag in wanted:
                if fnmatchcase(tag, pattern):
                    raise TagImmutable(tag, pattern)

    async def _point(
        self, conn: AsyncConnection, repo_id: int, tag: str, digest: str, moved: bool
    ) -> None:
        """Point ``tag`` at ``digest``; when that moves it (or creates it), its history's open
        state ends and a new one starts."""
        now = _now()
        await conn.execute(
            upsert(conn, tags)
            .values(repository_id=repo_id, name=tag, manifest_digest=digest, updated_at=now)
            .on_conflict_do_update(
                index_elements=["repository_id", "name"],
                set_={"manifest_digest": digest, "updated_at": now},
            )
        )
        if moved:
            await self._end_history(conn, repo_id, [tag], now)
            await conn.execute(
                insert(tag_history).values(
                    repository_id=repo_id, tag=tag, manifest_digest=digest, started_at=now
                )
            )

    @staticmethod
    async def _end_history(
        conn: AsyncConnection, repo_id: int, names: Sequence[str], now: datetime
    ) -> None:
        if names:
            await conn.execute(
                update(tag_history)
                .where(
                    tag_history.c.repository_id == repo_id,
                    tag_history.c.tag.in_(names),
                    tag_history.c.ended_at.is_(None),
                )
                .values(ended_at=now)
            )

    async def _insert_manifest(
        self, conn: AsyncConnection, repo_id: int, manifest: Manifest
    ) -> None:
        # A concurrent push of the same manifest may win the race: same bytes, nothing to do.
        # (No savepoint: on SQLite, whose driver begins transactions only at the first write,
        # releasing a savepoint that began one commits it, and the manifest would be stored
        # without its references and its tag.)
        manifest_id = await conn.scalar(
            upsert(conn, manifests)
            .values(
                repository_id=repo_id,
                digest=str(manifest.digest),
                media_type=manifest.media_type,
                artifact_type=manifest.artifact_type,
                subject_digest=str(manifest.subject.digest) if manifest.subject else None,
                annotations=manifest.annotations,
                size=len(manifest.payload),
                payload=manifest.payload,
                created_at=_now(),  # to the microsecond: collection's grace counts
            )
            .on_conflict_do_nothing()
            .returning(manifests.c.id)
        )
        if manifest_id is None:
            return
        references = {(str(d.digest), "blob") for d in manifest.blobs} | {
            (str(d.digest), "manifest") for d in manifest.children
        }
        if references:
            await conn.execute(
                insert(manifest_references),
                [{"manifest_id": manifest_id, "digest": d, "kind": k} for d, k in references],
            )

    async def resolve(self, name: str, reference: str, by_digest: bool) -> StoredManifest | None:
        query = (
            select(manifests.c.digest, manifests.c.media_type, manifests.c.payload)
            .join(repositories, repositories.c.id == manifests.c.repository_id)
            .where(repositories.c.name == name)
        )
        if by_digest:
            query = query.where(manifests.c.digest == reference)
        else:
            query = query.join(
                tags,
                and_(
                    tags.c.repository_id == manifests.c.repository_id,
                    tags.c.manifest_digest == manifests.c.digest,
                ),
            ).where(tags.c.name == reference)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return StoredManifest(row.digest, row.media_type, row.payload) if row else None

    async def delete_manifest(self, name: str, digest: str) -> bool:
        """Delete a manifest and every tag pointing at it."""
        async with self.engine.begin() as conn:
            repo_id = await self._repo_id(conn, name)
            if repo_id is None:
                return False
            # The tags are those the delete itself removes (not those a read saw a moment
            # earlier): a tag moved onto this manifest meanwhile goes too, with its history.
            untagged = list(
                (
                    await conn.execute(
                        delete(tags)
                        .where(tags.c.repository_id == repo_id, tags.c.manifest_digest == digest)
                        .returning(tags.c.name)
                    )
                ).scalars()
            )
            await self._check_mutable(conn, name, untagged)  # raises: the transaction undone
            now = _now()
            await self._end_history(conn, repo_id, untagged, now)
            feed = [
                {"repository": name, "kind": "untag", "digest": digest, "tag": t, "at": now}
                for t in untagged
            ]
            result = await conn.execute(
                delete(manifests).where(
                    manifests.c.repository_id == repo_id, manifests.c.digest == digest
                )
            )
            if result.rowcount > 0:
                feed.append(
                    {
                        "repository": name,
                        "kind": "delete",
                        "digest": digest,
                        "tag": None,
                        "at": _now(),
                    }
                )
                await conn.execute(insert(events), feed)
            return result.rowcount > 0

    async def restore_tag(
        self, name: str, tag: str, digest: str, since: datetime
    ) -> tuple[str | None, bool]:
        """Point ``tag`` back at ``digest``, a manifest it pointed at after ``since`` (the
        namespace's time machine window) that the repository still holds; its previous digest
        (None: the tag was deleted) and whether the restore could be made."""
        async with self.engine.begin() as conn:
            repo_id = await self._repo_id(conn, name)
            if repo_id is None:
                return None, False
            await gc.share_repository(conn, repo_id)
            await self._lock_tag(conn, repo_id, tag)
            held = await conn.scalar(
                select(manifests.c.id).where(
                    manifests.c.repository_id == repo_id, manifests.c.digest == digest
                )
            )
            known = await conn.scalar(
                select(func.count()).where(
                    tag_history.c.repository_id == repo_id,
                    tag_history.c.tag == tag,
                    tag_history.c.manifest_digest == digest,
                    (tag_history.c.ended_at.is_(None)) | (tag_history.c.ended_at >= since),
                )
            )
            if held is None or not known:
                return None, False
            previous = await conn.scalar(
                select(tags.c.manifest_digest).where(
                    tags.c.repository_id == repo_id, tags.c.name == tag
                )
            )
            if previous != digest:
                if previous is not None:
                    await self._check_mutable(conn, name, [tag])
                await self._point(conn, repo_id, tag, digest, moved=True)
                await conn.execute(
                    insert(events).values(
                        repository=name, kind="push", digest=digest, tag=tag, at=_now()
                    )
                )
            return previous, True

    async def delete_tag(self, name: str, tag: str) -> bool:
        async with self.engine.begin() as conn:
            repo_id = await self._repo_id(conn, name)
            if repo_id is None:
                return False
            await self._lock_tag(conn, repo_id, tag)
            digest = (
                await conn.execute(
                    select(tags.c.manifest_digest).where(
                        tags.c.repository_id == repo_id, tags.c.name == tag
                    )
                )
            ).scalar_one_or_none()
            if digest is None:
                return False
            await self._check_mutable(conn, name, [tag])
            await conn.execute(
                delete(tags).where(tags.c.repository_id == repo_id, tags.c.name == tag)
            )
            await self._end_history(conn, repo_id, [tag], _now())
            await conn.execute(
                insert(events).values(
                    repository=name, kind="untag", digest=digest, tag=tag, at=_now()
                )
            )
            return True

    async def list_tags(self, name: str, limit: int, last: str | None) -> list[str] | None:
        async with self.engine.connect() as conn:
            repo_id = await self._repo_id(conn, name)
            if repo_id is None:
                return None
            query = (
                select(tags.c.name)
                .where(tags.c.repository_id == repo_id)
                .order_by(tags.c.name)
                .limit(limit)
            )
            if last:
                query = query.where(tags.c.name > last)
            return list((await conn.execute(query)).scalars())

    async def referrers(
        self, name: str, subject: str, artifact_type: str | None
    ) -> list[Descriptor]:
        query = (
            select(
                manifests.c.digest,
                manifests.c.media_type,
                manifests.c.size,
                manifests.c.artifact_type,
                manifests.c.annotations,
            )
            .join(repositories, repositories.c.id == manifests.c.repository_id)
            .where(repositories.c.name == name, manifests.c.subject_digest == subject)
            .order_by(manifests.c.id)
        )
        if artifact_type is not None:
            query = query.where(manifests.c.artifact_type == artifact_type)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Descriptor(r.media_type, Digest.parse(r.digest), r.size, r.artifact_type, r.annotations)
            for r in rows
        ]
