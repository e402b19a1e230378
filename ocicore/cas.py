"""The content-addressed blob store on a local filesystem.

Layout under the store's root::

    <root>/
    ├── blobs/                      committed content, verified against its digest
    │   ├── sha256/
    │   │   └── ab/                 first two hex characters of the digest
    │   │       └── ab12…ef         the blob itself, named by its full hex digest
    │   └── sha512/…                same shape for sha512
    └── uploads/
        └── <uuid>                  bytes of an upload in progress (never served)

Bytes arrive in ``uploads/<uuid>``, are hashed while they stream in, written off the event
loop and fsynced; :meth:`ContentStore.commit` renames the file into ``blobs/`` only after its
digest matches, then fsyncs the directory. A file under ``blobs/`` is therefore always whole
and verified; a crash can leave at most an orphan in ``uploads/``. Names of repositories never
reach this module: paths are built only from validated digests and UUIDs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import BinaryIO

from ocicore.digest import Digest, Hasher
from ocicore.errors import ErrorCode, OCIError

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
WRITE_BATCH = 1 << 20  # bytes gathered before each hop to the writer thread
_READ_CHUNK = 4 << 20


class TooLarge(Exception):
    """The body exceeded the limit the caller set."""


class WrongLength(Exception):
    """The body was not as long as the caller said it would be."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_batch(f: BinaryIO, data: bytes, hasher: Hasher | None) -> None:
    f.write(data)
    if hasher is not None:
        hasher.update(data)


def _flush(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def hash_file(path: Path, digest: Digest) -> str:
    hasher = digest.hasher()
    with path.open("rb") as f:
        while chunk := f.read(_READ_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._uploads = root / "uploads"
        for path in (self._blobs, self._uploads):
            path.mkdir(parents=True, exist_ok=True)

    # -- committed blobs -------------------------------------------------------------------
    def blob_path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.encoded[:2] / digest.encoded

    def size(self, digest: Digest) -> int | None:
        """Size of a committed blob, or None when the store does not hold it."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def _place(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        _fsync_dir(target.parent)

    # -- uploads ---------------------------------------------------------------------------
    def upload_path(self, upload_id: str) -> Path:
        if not _UUID.match(upload_id):
            raise OCIError(ErrorCode.BLOB_UPLOAD_UNKNOWN, "malformed upload id")
        return self._uploads / upload_id

    def create_upload(self, upload_id: str) -> None:
        self.upload_path(upload_id).touch(exist_ok=False)

    async def write(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterable[bytes],
        hasher: Hasher | None,
        limit: int,
        exact: int | None = None,
    ) -> int:
        """Write ``body`` at ``offset`` (dropping anything past it), fsync; return bytes written.

        ``hasher``, if given, is fed every byte written. Raises :class:`TooLarge` once more than
        ``limit`` bytes arrive, :class:`WrongLength` if ``exact`` is given and the body had
        another length. On any failure the file is cut back to ``offset``.
        """
        path = self.upload_path(upload_id)
        f = path.open("r+b")  # not in a thread: a cancellation must not orphan the handle
        try:
            f.truncate(offset)
            f.seek(offset)
            written = 0
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in body:
                written += len(chunk)
                if written > limit:
                    raise TooLarge
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= WRITE_BATCH:
                    await asyncio.to_thread(_write_batch, f, b"".join(pending), hasher)
                    pending, pending_size = [], 0
            if exact is not None and written != exact:
                raise WrongLength(written)
            if pending:
                await asyncio.to_thread(_write_batch, f, b"".join(pending), hasher)
            await asyncio.to_thread(_flush, f)
        except BaseException:
            # Synchronous on purpose: this must also run when the task is being cancelled.
            f.truncate(offset)  # nothing of a failed write remains
            raise
        else:
            return written
        finally:
            f.close()

    async def commit(self, upload_id: str, digest: Digest, hexdigest: str | None) -> int:
        """Verify the upload against ``digest`` and move it into place; return its size.

        ``hexdigest`` is the running hash of the whole upload when the caller kept one for the
        same algorithm; without it the file is hashed again. Raises ``DIGEST_INVALID`` on a
        mismatch and leaves the upload as it was.
        """
        path = self.upload_path(upload_id)
        if hexdigest is None:
            hexdigest = await asyncio.to_thread(hash_file, path, digest)
        if hexdigest != digest.encoded:
            raise OCIError(ErrorCode.DIGEST_INVALID, "uploaded content does not match digest")
        size = path.stat().st_size
        await asyncio.to_thread(self._place, path, self.blob_path(digest))
        return size

    def discard_upload(self, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.upload_path(upload_id).unlink()

    def uploads_older_than(self, seconds: float) -> list[str]:
        """Upload ids whose files in ``uploads/`` went untouched for ``seconds``."""
        cutoff = time.time() - seconds
        return [
            p.name
            for p in self._uploads.iterdir()
            if _UUID.match(p.name) and p.stat().st_mtime < cutoff
        ]
