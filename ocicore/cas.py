"""The content-addressed blob store, over any storage driver (:mod:`ocicore.storage`).

Keys in the driver::

    blobs/<algorithm>/<first two hex>/<hex>   committed content, verified against its digest
    staging/<upload id>                       an upload being verified (see :meth:`commit`)

and the driver's uploads for bytes in progress (never served). Bytes are hashed while they
stream in; :meth:`BlobStore.commit` publishes an upload under its digest only after the digest
matches, so an object under ``blobs/`` is always whole and verified. Names of repositories
never reach this module: keys are built only from validated digests and UUIDs.

:class:`ContentStore` is the same store on a local filesystem, with the paths the edge's cache
and sendfile need.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ocicore.digest import Digest, Hasher
from ocicore.errors import ErrorCode, OCIError
from ocicore.storage.driver import NotFound, StorageDriver
from ocicore.storage.filesystem import FilesystemDriver

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_READ_CHUNK = 4 << 20
STAGING = "staging/"


Claim = Callable[[Digest, int], Awaitable[bool]]


class TooLarge(Exception):
    """The body exceeded the limit the caller set."""


class WrongLength(Exception):
    """The body was not as long as the caller said it would be."""


def hash_file(path: Path, digest: Digest) -> str:
    hasher = digest.hasher()
    with path.open("rb") as f:
        while chunk := f.read(_READ_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def blob_key(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"


def check_upload_id(upload_id: str) -> str:
    if not _UUID.match(upload_id):
        raise OCIError(ErrorCode.BLOB_UPLOAD_UNKNOWN, "malformed upload id")
    return upload_id


async def _bounded(
    body: AsyncIterable[bytes], limit: int, exact: int | None
) -> AsyncIterator[bytes]:
    written = 0
    async for chunk in body:
        written += len(chunk)
        if written > limit:
            raise TooLarge
        yield chunk
    if exact is not None and written != exact:
        raise WrongLength(written)


class BlobStore:
    def __init__(self, driver: StorageDriver, replace: bool = False) -> None:
        """``replace``: a verified upload of a blob already held replaces it (an edge's own
        fills: readers of the upload keep their file) instead of being dropped (the origin:
        content by digest never changes under anyone)."""
        self.driver = driver
        self.replace = replace

    @property
    def name(self) -> str:
        return self.driver.name

    # -- committed blobs -------------------------------------------------------------------
    async def size(self, digest: Digest) -> int | None:
        """Size of a committed blob, or None when the store does not hold it."""
        return await self.driver.stat(blob_key(digest))

    def read(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return self.driver.read(blob_key(digest), offset, length)

    async def read_all(self, digest: Digest) -> bytes:
        return b"".join([chunk async for chunk in self.read(digest)])

    def local_path(self, digest: Digest) -> Path | None:
        return self.driver.local_path(blob_key(digest))

    async def presign(self, digest: Digest, expires_seconds: float) -> str | None:
        return await self.driver.presign(blob_key(digest), expires_seconds)

    async def delete(self, digest: Digest) -> bool:
        return await self.driver.delete(blob_key(digest))

    async def hash_object(self, key: str, digest: Digest) -> str:
        hasher = digest.hasher()
        async for chunk in self.driver.read(key):
            await asyncio.to_thread(hasher.update, chunk)
        return hasher.hexdigest()

    async def copy_from(self, source: BlobStore, digest: Digest) -> int:
        """Copy a blob ``source`` holds into this store, verified on the way; its size."""
        upload_id = await self.new_upload()
        try:
            hasher = digest.hasher()
            await self.driver.append(upload_id, 0, source.read(digest), hasher.update)
            return await self.commit(upload_id, digest, hasher.hexdigest())
        finally:
            await self.abort_upload(upload_id)

    # -- uploads ---------------------------------------------------------------------------
    async def new_upload(self) -> str:
        upload_id = str(uuid.uuid4())
        await self.create_upload(upload_id)
        return upload_id

    async def create_upload(self, upload_id: str) -> None:
        await self.driver.create_upload(check_upload_id(upload_id))

    async def write(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterable[bytes],
        hasher: Hasher | None,
        limit: int,
        exact: int | None = None,
    ) -> int:
        """Write ``body`` at ``offset`` (dropping anything past it); return bytes written.

        ``hasher``, if given, is fed every byte written. Raises :class:`TooLarge` once more than
        ``limit`` bytes arrive, :class:`WrongLength` if ``exact`` is given and the body had
        another length. On any failure the upload is as it was.
        """
        return await self.driver.append(
            check_upload_id(upload_id),
            offset,
            _bounded(body, limit, exact),
            hasher.update if hasher is not None else None,
        )

    async def commit(
        self, upload_id: str, digest: Digest, hexdigest: str | None, claim: Claim | None = None
    ) -> int:
        """Verify the upload against ``digest`` and publish it; return its size.

        ``hexdigest`` is the running hash of the whole upload when the caller kept one for the
        same algorithm; without it the upload is published to ``staging/``, hashed there and
        moved into place. ``claim``, once the content is verified and before it is published,
        is told the digest and size, and answers whether to write the bytes even if the store
        seems to hold them (the origin's garbage collection may be deleting them). Raises
        ``DIGEST_INVALID`` on a mismatch (:class:`NotFound` when there is no such upload).
        """
        check_upload_id(upload_id)
        if hexdigest is not None:
            if hexdigest != digest.encoded:
                raise OCIError(ErrorCode.DIGEST_INVALID, "uploaded content does not match digest")
            replace = self.replace
            if claim is not None:
                replace = await claim(digest, await self.driver.upload_length(upload_id)) or replace
            held = None if replace else await self.driver.stat(blob_key(digest))
            if held is not None:
                # Published and verified before: content by digest is never replaced, so no
                # later upload (however it was written) can change what others pull.
                await self.driver.abort(upload_id)
                return held
            return await self.driver.publish(upload_id, blob_key(digest))
        staged = STAGING + upload_id
        size = await self.driver.publish(upload_id, staged)
        try:
            if await self.hash_object(staged, digest) != digest.encoded:
                raise OCIError(ErrorCode.DIGEST_INVALID, "uploaded content does not match digest")
            replace = claim is not None and await claim(digest, size)
            held = None if replace else await self.driver.stat(blob_key(digest))
            return held if held is not None else await self.driver.move(staged, blob_key(digest))
        finally:
            await self.driver.delete(staged)

    async def abort_upload(self, upload_id: str) -> None:
        await self.driver.abort(check_upload_id(upload_id))

    async def stale_uploads(self, seconds: float) -> list[str]:
        """Uploads untouched for ``seconds`` (and staged ones left by a crash are removed)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
        async for entry in self.driver.scan(STAGING):
            if entry.modified < cutoff:
                await self.driver.delete(entry.key)
        return [
            upload_id
            for upload_id, modified in await self.driver.uploads()
            if _UUID.match(upload_id) and modified < cutoff
        ]


class ContentStore(BlobStore):
    """The blob store on a local filesystem: files the edge links, seeds and sends."""

    def __init__(self, root: Path, name: str = "local", replace: bool = False) -> None:
        self.files = FilesystemDriver(root, name)
        super().__init__(self.files, replace)
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: Digest) -> Path:
        return self.files.path(blob_key(digest))

    def upload_path(self, upload_id: str) -> Path:
        return self.files.upload_path(check_upload_id(upload_id))

    async def commit(
        self, upload_id: str, digest: Digest, hexdigest: str | None, claim: Claim | None = None
    ) -> int:
        """As :meth:`BlobStore.commit`, hashing the upload's file in place when needed (on a
        mismatch the upload is left as it was)."""
        if hexdigest is None:
            try:
                hexdigest = await asyncio.to_thread(hash_file, self.upload_path(upload_id), digest)
            except FileNotFoundError:
                raise NotFound(upload_id) from None
        return await super().commit(upload_id, digest, hexdigest, claim)

    def discard_upload(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.upload_path(upload_id).unlink()

    def uploads_older_than(self, seconds: float) -> list[str]:
        """Upload ids whose files went untouched for ``seconds``."""
        cutoff = time.time() - seconds
        return [
            p.name
            for p in self.files.uploads_dir.iterdir()
            if _UUID.match(p.name) and p.stat().st_mtime < cutoff
        ]
