"""Upload sessions: chunks appended in order, verified and committed by digest; the push side
of OCI Distribution for blobs, the same at the origin and at the edges.

The session's committed offset lives in a database (:class:`Sessions`: the origin's metadata,
an edge's journal) and its bytes in the content store, so a session survives a restart (or
lands on another process). Each process keeps the running hash of the sessions it served last,
so a finishing ``PUT`` does not read the upload again; when it lacks one (after a restart, or
for a sha512 digest, or when another replica took the last chunk) the store hashes the
upload again. A committed blob is handed to ``link``, which makes it
visible where it belongs (and, with ``finished_upload``, closes the session in the same step).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import Gauge

from ocicore.cas import BlobStore, Claim, TooLarge, WrongLength, check_upload_id
from ocicore.digest import Digest, Hasher
from ocicore.errors import ErrorCode, OCIError
from ocicore.storage.driver import NotFound

_HASHERS_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    repository: str
    offset: int


class UploadBusy(Exception):
    """Another process is writing to the upload session."""


class Sessions(Protocol):
    """Where upload sessions are recorded."""

    async def create_upload(self, upload_id: str, name: str) -> None: ...
    async def get_upload(self, upload_id: str) -> Upload | None: ...
    async def advance_upload(self, upload_id: str, old: int, new: int) -> bool:
        """Record ``new`` as the offset if it is still ``old`` (false otherwise)."""

    async def delete_upload(self, upload_id: str) -> bool: ...
    def exclusive(self, upload_id: str) -> AbstractAsyncContextManager[None]:
        """Held while this process writes to or commits the session: across processes
        sharing the sessions, raises :class:`UploadBusy` when another holds it."""

    async def uploads_before(self, cutoff: datetime) -> list[str]: ...
    async def upload_ids(self) -> set[str]: ...


class Link(Protocol):
    async def __call__(
        self, name: str, digest: str, size: int, finished_upload: str | None = None
    ) -> None:
        """Make a committed blob visible in repository ``name`` (closing its session)."""


@dataclass(frozen=True, slots=True)
class ChunkRange:
    """An inclusive byte range from ``Content-Range``."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


class UploadService:
    def __init__(
        self,
        store: BlobStore,
        meta: Sessions,
        link: Link,
        max_blob_bytes: int,
        in_progress: Gauge,
        claim: Claim | None = None,
    ) -> None:
        """``claim``: told each verified blob before it is published (:meth:`BlobStore.commit`)."""
        self.store = store
        self.claim = claim
        self.meta = meta
        self.link = link
        self.max_blob_bytes = max_blob_bytes
        self.in_progress = in_progress
        self._hashers: OrderedDict[str, tuple[int, Hasher]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def start(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        await self.meta.create_upload(upload_id, name)  # first: it may refuse (a quota)
        await self.store.create_upload(upload_id)
        self.in_progress.inc()
        return upload_id

    async def get(self, name: str, upload_id: str) -> Upload:
        check_upload_id(upload_id)
        upload = await self.meta.get_upload(upload_id)
        if upload is None or upload.repository != name:
            raise OCIError(ErrorCode.BLOB_UPLOAD_UNKNOWN, upload_id)
        return upload

    def _lock(self, upload_id: str) -> asyncio.Lock:
        return self._locks.setdefault(upload_id, asyncio.Lock())

    @asynccontextmanager
    async def _writing(self, upload_id: str) -> AsyncIterator[None]:
        """One writer per session: in this process (a lock) and among processes sharing the
        sessions (replicas), so no two bodies land in one upload at once."""
        async with self._lock(upload_id):
            try:
                async with self.meta.exclusive(upload_id):
                    yield
            except UploadBusy:
                raise OCIError(
                    ErrorCode.RANGE_INVALID, "another request is writing to this upload"
                ) from None

    async def _append(
        self, upload: Upload, body: AsyncIterable[bytes] | None, chunk: ChunkRange | None
    ) -> int:
        """Write ``body`` at the session's offset and record the new offset; return it.

        ``body`` is None for a request without one: then nothing is written or recorded."""
        if body is None and chunk is None:
            return upload.offset
        if chunk is not None and chunk.start != upload.offset:
            raise OCIError(
                ErrorCode.RANGE_INVALID,
                f"chunk starts at {chunk.start}, upload is at {upload.offset}",
            )
        kept = self._hashers.pop(upload.id, None)
        hasher: Hasher | None = None
        if kept is not None and kept[0] == upload.offset:
            hasher = kept[1]
        elif upload.offset == 0:
            hasher = hashlib.sha256()
        try:
            written = await self.store.write(
                upload.id,
                upload.offset,
                body or _nothing(),
                hasher,
                limit=self.max_blob_bytes - upload.offset,
                exact=chunk.length if chunk is not None else None,
            )
        except TooLarge:
            raise OCIError(
                ErrorCode.SIZE_INVALID, f"blob exceeds {self.max_blob_bytes} bytes", status=413
            ) from None
        except NotFound:
            raise OCIError(ErrorCode.BLOB_UPLOAD_UNKNOWN, upload.id) from None
        except WrongLength as wrong:
            raise OCIError(
                ErrorCode.SIZE_INVALID,
                f"Content-Range announced {chunk.length if chunk else 0} bytes, body had {wrong}",
            ) from None
        new_offset = upload.offset + written
        if not await self.meta.advance_upload(upload.id, upload.offset, new_offset):
            raise OCIError(ErrorCode.RANGE_INVALID, "upload was advanced concurrently")
        if hasher is not None:
            self._hashers[upload.id] = (new_offset, hasher)
            while len(self._hashers) > _HASHERS_KEPT:
                self._hashers.popitem(last=False)
        return new_offset

    async def append(
        self,
        name: str,
        upload_id: str,
        body: AsyncIterable[bytes] | None,
        chunk: ChunkRange | None,
    ) -> int:
        await self.get(name, upload_id)  # no lock is kept for an id nobody opened
        async with self._writing(upload_id):
            upload = await self.get(name, upload_id)
            return await self._append(upload, body, chunk)

    async def finish(
        self,
        name: str,
        upload_id: str,
        digest: Digest,
        body: AsyncIterable[bytes] | None,
        chunk: ChunkRange | None,
    ) -> int:
        """Append the last chunk (if any), verify, make the blob visible; return its size."""
        await self.get(name, upload_id)
        async with self._writing(upload_id):
            upload = await self.get(name, upload_id)
            offset = await self._append(upload, body, chunk)
            kept = self._hashers.get(upload_id)
            hexdigest = None
            if kept is not None and kept[0] == offset and digest.algorithm == "sha256":
                hexdigest = kept[1].hexdigest()
            try:
                size = await self.store.commit(upload_id, digest, hexdigest, self.claim)
            except NotFound:
                # Committed before a crash that came ahead of the acknowledgement: start over.
                await self._forget(upload_id)
                raise OCIError(ErrorCode.BLOB_UPLOAD_UNKNOWN, upload_id) from None
            await self.link(name, str(digest), size, finished_upload=upload_id)
            self.in_progress.dec()
            self._drop_state(upload_id)
            return size

    async def monolithic(self, name: str, digest: Digest, body: AsyncIterable[bytes] | None) -> int:
        """A whole blob in one request (``POST ?digest=``): no session is recorded."""
        upload_id = await self.store.new_upload()
        try:
            hasher = digest.hasher()
            try:
                await self.store.write(
                    upload_id, 0, body or _nothing(), hasher, limit=self.max_blob_bytes
                )
            except TooLarge:
                raise OCIError(
                    ErrorCode.SIZE_INVALID, f"blob exceeds {self.max_blob_bytes} bytes", status=413
                ) from None
            size = await self.store.commit(upload_id, digest, hasher.hexdigest(), self.claim)
        finally:
            await self.store.abort_upload(upload_id)
        await self.link(name, str(digest), size)
        return size

    async def cancel(self, name: str, upload_id: str) -> None:
        await self.get(name, upload_id)
        async with self._writing(upload_id):
            await self.get(name, upload_id)
            await self._forget(upload_id)

    async def expire(self, ttl: float) -> int:
        """Drop sessions opened more than ``ttl`` seconds ago, and orphaned upload files
        (monolithic pushes cut short by a crash); return how many sessions were dropped."""
        cutoff = datetime.now(UTC) - timedelta(seconds=ttl)
        expired = await self.meta.uploads_before(cutoff)
        for upload_id in expired:
            async with self._lock(upload_id):
                await self._forget(upload_id)
        stale = await self.store.stale_uploads(ttl)
        if stale:
            live = await self.meta.upload_ids()
            for name in stale:
                if name not in live:
                    await self.store.abort_upload(name)
        return len(expired)

    async def _forget(self, upload_id: str) -> None:
        if await self.meta.delete_upload(upload_id):
            self.in_progress.dec()
        await self.store.abort_upload(upload_id)
        self._drop_state(upload_id)

    def _drop_state(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        self._locks.pop(upload_id, None)
