"""The storage driver contract, which every driver (filesystem, S3) passes in
``tests/storage/test_contract.py``.

Two kinds of things live in a driver:

* **objects**, immutable once published, named by keys (``[A-Za-z0-9._-]`` segments joined by
  ``/``; no empty, ``.`` or ``..`` segment): stat, read (whole or a range), list, delete;
* **uploads**, byte sequences that grow by appends and become an object by :meth:`publish`,
  named by ids of the same alphabet without ``/``.

An append is all or nothing: when the body raises (a client went away, a limit was hit), none
of it remains. An object never appears partially: publish is atomic.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$")

Tap = Callable[[bytes], None]
"""Called with every batch of bytes an append writes, in order (possibly in a worker thread):
how a caller hashes what goes by without holding the event loop."""


class NotFound(Exception):
    """No object at that key, or no upload by that id."""


class OffsetMismatch(Exception):
    """An append did not start where the upload ends."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    size: int
    modified: datetime


def check_key(key: str) -> str:
    """``key`` if it is a valid object key; ValueError otherwise."""
    parts = key.split("/")
    if len(key) > 1024 or not all(_SEGMENT.match(p) for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def check_upload_id(upload_id: str) -> str:
    if not _SEGMENT.match(upload_id):
        raise ValueError(f"invalid upload id {upload_id!r}")
    return upload_id


class StorageDriver(Protocol):
    name: str  # what metrics and logs call this location

    # -- objects -------------------------------------------------------------------------
    async def stat(self, key: str) -> int | None:
        """The object's size, or None when there is none."""

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes from ``offset`` (``length`` of them, or to the end).
        Raises :class:`NotFound` (on first iteration) when there is no object."""

    def local_path(self, key: str) -> Path | None:
        """A file holding the object, for sendfile, when the driver has one."""

    async def presign(self, key: str, expires_seconds: float) -> str | None:
        """A URL a client can GET the object from without credentials, or None."""

    async def delete(self, key: str) -> bool:
        """Remove the object; false when there was none."""

    async def move(self, source: str, target: str) -> int:
        """Put the object ``source`` at ``target`` (replacing one there; inside the storage,
        no bytes through this process) and delete ``source``; the object's size."""

    def scan(self, prefix: str) -> AsyncIterator[Entry]:
        """Objects whose keys start with ``prefix`` (in no promised order)."""

    # -- uploads -------------------------------------------------------------------------
    async def create_upload(self, upload_id: str) -> None:
        """An empty upload (FileExistsError if the id is taken)."""

    async def upload_length(self, upload_id: str) -> int:
        """How many bytes the upload holds (:class:`NotFound` if none)."""

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterable[bytes],
        tap: Tap | None = None,
    ) -> int:
        """Write ``body`` at ``offset``, dropping whatever the upload held past it (a retry
        after a crash between an append and its recording); return the bytes written.
        ``offset`` must be a length the upload had at the end of an earlier append (or 0):
        :class:`OffsetMismatch` otherwise, the upload unchanged. When the body fails, nothing
        of it remains: the upload is as it was, except that what lay past ``offset`` (bytes
        nobody recorded) may be gone."""

    async def publish(self, upload_id: str, key: str) -> int:
        """Make the upload the object at ``key`` (replacing one there) and end the upload;
        return the object's size."""

    async def abort(self, upload_id: str) -> None:
        """End the upload and free its bytes (nothing when there is none)."""

    async def uploads(self) -> list[tuple[str, datetime]]:
        """Every upload and when it last changed."""

    async def ping(self) -> None:
        """Raise when the storage cannot be reached (readiness)."""

    async def close(self) -> None:
        """Release connections."""
