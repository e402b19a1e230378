"""Blobs as a repository sees them: visible only once linked to that repository, read from the
nearest storage location that holds them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cachetools import LRUCache, TTLCache

from ocicore.cas import BlobStore
from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from origin.locations import Locations
from origin.metadata.store import MetadataStore
from origin.registry.cache import ReadCache


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    store: BlobStore  # the nearest location holding it


SMALL_BLOB_BYTES = 256 << 10


class BlobService:
    def __init__(
        self,
        locations: Locations,
        meta: MetadataStore,
        sizes: ReadCache[int],
        small_blob_cache_bytes: int,
        refresh_seconds: float | None = None,
    ) -> None:
        """``refresh_seconds``: how stale a link may be before a client's asking for it keeps
        it from garbage collection again (None: no collection)."""
        self.locations = locations
        self.refresh_seconds = refresh_seconds
        self._asked: TTLCache[tuple[str, str], bool] = TTLCache(
            100_000, refresh_seconds if refresh_seconds else 1.0
        )
        self.meta = meta
        self.sizes = sizes
        # Content is immutable by digest, so small blobs (configs, most of every pull's
        # requests) can be kept in memory with no invalidation; visibility is still checked.
        self._small: LRUCache[Digest, bytes] = LRUCache(small_blob_cache_bytes, getsizeof=len)
        self._where: LRUCache[Digest, BlobStore] = LRUCache(100_000)

    async def small_content(self, info: BlobInfo) -> bytes | None:
        """The bytes of a small blob from memory (read once), or None for a large one."""
        if info.size > SMALL_BLOB_BYTES:
            return None
        data = self._small.get(info.digest)
        if data is None:
            data = await info.store.read_all(info.digest)
            self._small[info.digest] = data
        return data

    async def unknown(self, name: str, code: ErrorCode, detail: str) -> OCIError:
        """The error for something missing: NAME_UNKNOWN when the repository itself is."""
        if not await self.meta.repository_exists(name):
            return OCIError(ErrorCode.NAME_UNKNOWN, name)
        return OCIError(code, detail)

    async def locate(self, digest: Digest) -> BlobStore | None:
        """The nearest location holding the blob (remembered: placements only grow until
        garbage collection, which forgets them here: :meth:`forget`)."""
        found = self._where.get(digest)
        if found is not None:
            return found
        if len(self.locations) == 1:
            store = self.locations.primary
            found = store if await store.size(digest) is not None else None
        else:
            found = self.locations.pick(await self.meta.placements(str(digest)))
        if found is not None:
            self._where[digest] = found
        return found

    async def stat(self, name: str, digest: Digest) -> BlobInfo:
        size = await self.sizes.get(
            (name, str(digest)), lambda: self.meta.blob_size(name, str(digest))
        )
        store = await self.locate(digest) if size is not None else None
        if size is None or store is None:
            raise await self.unknown(name, ErrorCode.BLOB_UNKNOWN, str(digest))
        return BlobInfo(digest, size, store)

    async def delete(self, name: str, digest: Digest) -> None:
        """Unlink the blob from the repository; its bytes go when garbage collection runs."""
        unlinked = await self.meta.unlink_blob(name, str(digest))
        self.sizes.drop((name, str(digest)))
        if not unlinked:
            raise await self.unknown(name, ErrorCode.BLOB_UNKNOWN, str(digest))

    async def mount(self, name: str, digest: Digest, source: str) -> bool:
        """Link a blob that ``source`` already holds into ``name``; false if it can't."""
        if await self.locate(digest) is None:
            return False
        return await self.meta.mount_blob(name, str(digest), source) is not None

    async def asked(self, name: str, digest: Digest) -> None:
        """A client asked whether the repository holds the blob (a pushing client does, to
        skip uploading it): the link stays out of garbage collection's reach for another
        grace period. At most one write per link per refresh period from this process."""
        key = (name, str(digest))
        if self.refresh_seconds is None or key in self._asked:
            return
        self._asked[key] = True
        older_than = datetime.now(UTC) - timedelta(seconds=self.refresh_seconds)
        await self.meta.touch_link(name, str(digest), older_than)

    def forget(self, digest: Digest) -> None:
        """Garbage collection deleted the blob: forget where it was, and its bytes."""
        self._where.pop(digest, None)
        self._small.pop(digest, None)
