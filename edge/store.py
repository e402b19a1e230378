"""The edge's disk: blobs by digest, bounded by size, least recently used out first.

Blob files live in a content-addressed store (``ocicore.cas``: written under ``uploads/``,
verified, renamed into ``blobs/``); diskcache keeps the durable index (size, last access,
pins) beside them, and memory keeps the working copy the hot path reads. Beyond the capacity,
the least recently used blobs are deleted, except those being read and those pinned (pushes
not yet replicated). The index survives restarts and is reconciled with the files at start:
files without an entry are indexed, entries without a file dropped.

A blob is stored once whatever repositories hold it; :meth:`BlobStore.held` records which
repositories the upstream said hold it, so that it is never served through another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import diskcache
import structlog

from ocicore.cas import ContentStore
from ocicore.digest import Digest

_log = structlog.get_logger("wharf.edge.store")


@dataclass
class Entry:
    size: int
    atime: float


class BlobStore:
    def __init__(self, root: Path, capacity: int) -> None:
        self.files = ContentStore(root, replace=True)  # fills in flight keep their files
        self.capacity = capacity
        self.index = diskcache.Cache(str(root / "index"), eviction_policy="none", size_limit=2**50)
        self._entries: dict[str, Entry] = {}
        self._readers: Counter[str] = Counter()
        self._dirty: set[str] = set()
        self.total = 0
        self.on_evict: Callable[[], None] = lambda: None
        self.evict_listeners: list[Callable[[str], None]] = []

    # -- start and stop ----------------------------------------------------------------------
    def load(self) -> None:
        """Read the index and reconcile it with the files (call once, in a thread, before any
        fill starts: the temporary files of fills a crash interrupted are deleted)."""
        for upload_id in self.files.uploads_older_than(0):
            self.files.discard_upload(upload_id)
        on_disk: dict[str, int] = {}
        for algorithm in ("sha256", "sha512"):
            folder = self.files.root / "blobs" / algorithm
            if folder.is_dir():
                for path in folder.glob("*/*"):
                    on_disk[f"{algorithm}:{path.name}"] = path.stat().st_size
        for key in list(self.index.iterkeys()):
            if not isinstance(key, str) or not key.startswith("blob:"):
                continue
            digest = key[5:]
            value = self.index.get(key)
            if digest in on_disk and isinstance(value, tuple):
                self._entries[digest] = Entry(on_disk.pop(digest), float(value[1]))
            else:
                self.index.delete(key)
        now = time.time()
        for digest, size in on_disk.items():  # committed just before a crash: index them
            self._entries[digest] = Entry(size, now)
            self.index.set(f"blob:{digest}", (size, now))
        self.total = sum(e.size for e in self._entries.values())
        _log.info("cache loaded", blobs=len(self._entries), bytes=self.total)

    def flush(self) -> None:
        """Write the last-access times gathered since the last flush."""
        dirty, self._dirty = self._dirty, set()
        for digest in dirty:
            entry = self._entries.get(digest)
            if entry is not None:
                self.index.set(f"blob:{digest}", (entry.size, entry.atime))

    def close(self) -> None:
        self.flush()
        self.index.close()

    # -- the hot path --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def size(self, digest: Digest) -> int | None:
        entry = self._entries.get(str(digest))
        return entry.size if entry is not None else None

    def path(self, digest: Digest) -> Path:
        return self.files.blob_path(digest)

    def acquire(self, digest: Digest) -> Path:
        """The blob's file, kept from eviction until :meth:`release`; a use, for the LRU."""
        key = str(digest)
        self._readers[key] += 1
        entry = self._entries.get(key)
        if entry is not None:
            entry.atime = time.time()
            self._dirty.add(key)
        return self.files.blob_path(digest)

    def release(self, digest: Digest) -> None:
        key = str(digest)
        self._readers[key] -= 1
        if self._readers[key] <= 0:
            del self._readers[key]

    @contextlib.contextmanager
    def reading(self, digest: Digest) -> Iterator[Path]:
        """The blob's file, kept from eviction while the block runs."""
        path = self.acquire(digest)
        try:
            yield path
        finally:
            self.release(digest)

    # -- filling -------------------------------------------------------------------------------
    def temp_path(self, upload_id: str) -> Path:
        return self.files.upload_path(upload_id)

    async def admit(self, upload_id: str, digest: Digest, hexdigest: str | None) -> int:
        """Verify and commit a filled blob (``hexdigest``: its running hash; None: hash the
        file), index it, and make room for it."""
        size = await self.files.commit(upload_id, digest, hexdigest)
        await self.adopt(digest, size)
        return size

    async def adopt(self, digest: Digest, size: int) -> None:
        """Index a blob already committed to the files (a push), and make room for it."""
        key = str(digest)
        if key not in self._entries:
            self.total += size
        self._entries[key] = Entry(size, time.time())
        await asyncio.to_thread(self.index.set, f"blob:{key}", (size, time.time()))
        victims = self.evict()  # chosen on the event loop, where readers come and go
        for victim in victims:
            for listener in self.evict_listeners:
                listener(victim)
        if victims:
            await asyncio.to_thread(self.remove, victims)

    def pin(self, digest: Digest) -> None:
        self.index.set(f"pin:{digest}", True)

    def unpin(self, digest: Digest) -> None:
        self.index.delete(f"pin:{digest}")

    def evict(self) -> list[str]:
        """Choose least recently used blobs to delete until the cache fits its capacity, and
        forget them at once (so no new reader finds them); :meth:`remove` deletes the files.
        Blobs being read and pinned blobs are skipped."""
        if self.total <= self.capacity:
            return []
        victims = []
        for digest, entry in sorted(self._entries.items(), key=lambda item: item[1].atime):
            if self.total <= self.capacity:
                break
            if self._readers.get(digest) or self.index.get(f"pin:{digest}"):
                continue
            del self._entries[digest]
            self._dirty.discard(digest)
            self.total -= entry.size
            victims.append(digest)
            self.on_evict()
        return victims

    async def discard(self, digest: Digest) -> bool:
        """Evict one blob now (the origin deleted it), unless it is pinned (pushed here, on
        its way to the origin) or being read (then it stays, as any cached blob, until evicted)."""
        key = str(digest)
        entry = self._entries.get(key)
        if entry is None or self._readers.get(key) or self.index.get(f"pin:{key}"):
            return False
        del self._entries[key]
        self._dirty.discard(key)
        self.total -= entry.size
        for listener in self.evict_listeners:
            listener(key)
        await asyncio.to_thread(self.remove, [key])
        return True

    def remove(self, victims: list[str]) -> None:
        """Delete the files and index entries of evicted blobs (in a thread)."""
        for digest in victims:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.files.blob_path(Digest.parse(digest)))
            self.index.delete(f"blob:{digest}")

    # -- which repositories hold what ----------------------------------------------------------
    def held(self, repository: str, digest: str) -> float | None:
        """When the upstream last said ``repository`` holds ``digest`` (None: never)."""
        found = self.index.get(f"held:{repository}@{digest}")
        return float(found) if isinstance(found, float) else None

    def hold(self, repository: str, digest: str) -> None:
        self.index.set(f"held:{repository}@{digest}", time.time())

    def forget(self, repository: str, digest: str) -> None:
        self.index.delete(f"held:{repository}@{digest}")
