"""Storage on a local (or shared, POSIX) filesystem.

Objects are files at ``<root>/<key>``; uploads are files at ``<root>/uploads/<id>``. Bytes are
written off the event loop in batches and fsynced; publishing renames the upload into place
and fsyncs the directory, so a crash leaves at most an upload behind, never half an object.
Several processes may share the root (the rename is atomic; ``uploads/`` is not an object
prefix drivers hand out).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from ocicore.storage.driver import (
    Entry,
    NotFound,
    OffsetMismatch,
    Tap,
    check_key,
    check_upload_id,
)

WRITE_BATCH = 1 << 20  # bytes gathered before each hop to the writer thread
READ_CHUNK = 1 << 20
UPLOADS = "uploads"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_batch(f: BinaryIO, data: bytes, tap: Tap | None) -> None:
    f.write(data)
    if tap is not None:
        tap(data)


def _flush(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _read_range(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(length)


class FilesystemDriver:
    def __init__(self, root: Path, name: str = "local") -> None:
        self.root = root
        self.name = name
        self.uploads_dir = root / UPLOADS
        self.uploads_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] == UPLOADS:
            raise ValueError(f"{UPLOADS}/ holds uploads, not objects")
        return self.root / key

    def upload_path(self, upload_id: str) -> Path:
        return self.uploads_dir / check_upload_id(upload_id)

    # -- objects -------------------------------------------------------------------------
    async def stat(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    async def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(key) from None
        end = size if length is None else min(size, offset + length)
        while offset < end:
            chunk = await asyncio.to_thread(
                _read_range, path, offset, min(READ_CHUNK, end - offset)
            )
            if not chunk:
                raise NotFound(key)  # deleted while being read
            offset += len(chunk)
            yield chunk

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    async def presign(self, key: str, expires_seconds: float) -> str | None:
        return None

    async def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    async def move(self, source: str, target: str) -> int:
        try:
            return await asyncio.to_thread(self._place, self.path(source), self.path(target))
        except FileNotFoundError:
            raise NotFound(source) from None

    async def scan(self, prefix: str) -> AsyncIterator[Entry]:
        folder, _, start = prefix.rpartition("/")
        base = self.path(folder) if folder else self.root
        entries = await asyncio.to_thread(self._walk, base, folder, start)
        for entry in entries:
            yield entry

    def _walk(self, base: Path, folder: str, start: str) -> list[Entry]:
        found: list[Entry] = []
        if not base.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            if here == self.uploads_dir:
                dirnames.clear()
                continue
            for filename in filenames:
                path = here / filename
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(f"{folder}/{start}" if folder else start):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    found.append(Entry(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        return found

    # -- uploads -------------------------------------------------------------------------
    async def create_upload(self, upload_id: str) -> None:
        self.upload_path(upload_id).touch(exist_ok=False)

    async def upload_length(self, upload_id: str) -> int:
        try:
            return self.upload_path(upload_id).stat().st_size
        except FileNotFoundError:
            raise NotFound(upload_id) from None

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterable[bytes],
        tap: Tap | None = None,
    ) -> int:
        path = self.upload_path(upload_id)
        try:
            f = path.open("r+b")  # not in a thread: a cancellation must not orphan the handle
        except FileNotFoundError:
            raise NotFound(upload_id) from None
        if offset > os.fstat(f.fileno()).st_size:
            f.close()
            raise OffsetMismatch(offset)
        try:
            f.truncate(offset)
            f.seek(offset)
            written = 0
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in body:
                written += len(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= WRITE_BATCH:
                    await asyncio.to_thread(_write_batch, f, b"".join(pending), tap)
                    pending, pending_size = [], 0
            if pending:
                await asyncio.to_thread(_write_batch, f, b"".join(pending), tap)
            await asyncio.to_thread(_flush, f)
        except BaseException:
            # Synchronous on purpose: this must also run when the task is being cancelled.
            f.truncate(offset)  # nothing of a failed write remains
            raise
        else:
            return written
        finally:
            f.close()

    def _place(self, source: Path, target: Path) -> int:
        size = source.stat().st_size
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        fsync_dir(target.parent)
        return size

    async def publish(self, upload_id: str, key: str) -> int:
        source, target = self.upload_path(upload_id), self.path(key)
        try:
            return await asyncio.to_thread(self._place, source, target)
        except FileNotFoundError:
            raise NotFound(upload_id) from None

    async def abort(self, upload_id: str) -> None:
        self.upload_path(upload_id).unlink(missing_ok=True)

    async def uploads(self) -> list[tuple[str, datetime]]:
        return await asyncio.to_thread(self._list_uploads)

    def _list_uploads(self) -> list[tuple[str, datetime]]:
        found: list[tuple[str, datetime]] = []
        for path in self.uploads_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                found.append((path.name, datetime.fromtimestamp(path.stat().st_mtime, UTC)))
        return found

    async def ping(self) -> None:
        if not self.uploads_dir.is_dir():
            raise FileNotFoundError(f"{self.root} is missing")

    async def close(self) -> None:
        return None
