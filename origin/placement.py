"""The copier: places every queued blob in the location that still lacks it.

It runs on the leading replica only (:mod:`origin.leader`). Each copy streams the blob from
the nearest location holding it into an upload at the target, verifying the digest on the
way, and publishes it there before recording the placement: a copier killed mid-way leaves
an upload (reaped later) and its queue row, and the next copier does the copy again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from ocicore.digest import Digest
from ocicore.tasks import start_tracked
from origin.locations import Locations
from origin.metadata.placements import Copy, Placements

_log = structlog.get_logger("wharf.origin.placement")

IDLE_SECONDS = 0.5  # how soon a copy queued by any replica is noticed
MAX_RETRY_SECONDS = 300.0
STUCK_AFTER = 3  # failed attempts before a copy is reported (a replication_failure webhook)


class Copier:
    def __init__(
        self,
        placements: Placements,
        locations: Locations,
        registry: CollectorRegistry,
        concurrency: int,
        stuck: Callable[[Copy, str], Awaitable[None]] | None = None,
    ) -> None:
        """``stuck``: told once when a copy has failed ``STUCK_AFTER`` times (webhooks)."""
        self.stuck = stuck
        self.placements = placements
        self.locations = locations
        self.concurrency = concurrency
        self.pending = Gauge(
            "wharf_origin_storage_pending_blobs",
            "Blob copies queued for each storage location",
            ["location"],
            registry=registry,
        )
        self.copied = Counter(
            "wharf_origin_storage_copied_bytes",
            "Bytes copied into each storage location",
            ["location"],
            registry=registry,
        )
        self.failures = Counter(
            "wharf_origin_storage_copy_failures",
            "Blob copies that failed (and will be tried again)",
            ["location"],
            registry=registry,
        )

    async def count_pending(self) -> None:
        counts = await self.placements.pending()
        for location in self.locations:
            self.pending.labels(location).set(counts.get(location, 0))

    async def run(self) -> None:
        """Copy what is due, ``concurrency`` at a time, until cancelled."""
        busy: dict[tuple[str, str], asyncio.Task[None]] = {}
        try:
            while True:
                free = self.concurrency - len(busy)
                try:
                    due = await self.placements.due(free, list(busy)) if free > 0 else []
                except Exception as exc:  # the database is away: try again soon
                    _log.warning("placement queue unreadable", error=str(exc))
                    due = []
                for copy in due:
                    key = (copy.digest, copy.location)
                    start_tracked(busy, key, self.copy(copy), name=f"copy {key}")
                if not due:
                    if busy:
                        await asyncio.wait(
                            set(busy.values()),
                            timeout=IDLE_SECONDS,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    else:
                        await asyncio.sleep(IDLE_SECONDS)
        finally:
            for task in busy.values():
                task.cancel()
            for task in list(busy.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def copy(self, copy: Copy) -> None:
        try:
            await self._copy(copy)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures.labels(copy.location).inc()
            retry_in = min(2.0**copy.attempts, MAX_RETRY_SECONDS)
            _log.warning(
                "blob copy failed",
                digest=copy.digest,
                location=copy.location,
                error=str(exc) or type(exc).__name__,
                retry_in=retry_in,
            )
            with contextlib.suppress(Exception):
                await self.placements.failed(copy, str(exc) or type(exc).__name__, retry_in)
                if self.stuck is not None and copy.attempts + 1 == STUCK_AFTER:
                    await self.stuck(copy, str(exc) or type(exc).__name__)

    async def _copy(self, copy: Copy) -> None:
        placement = await self.placements.of(copy.digest)
        if placement is None or copy.location in placement.locations:
            await self.placements.done(copy.digest, copy.location)
            return
        target = self.locations.stores.get(copy.location)
        if target is None:
            raise LookupError(f"location {copy.location} is not configured on this replica")
        source = self.locations.pick([n for n in placement.locations if n != copy.location])
        if source is None:
            raise LookupError("no configured location holds the blob")
        digest = Digest.parse(copy.digest)
        if await target.size(digest) != placement.size:  # else copied before a crash
            size = await target.copy_from(source, digest)
            self.copied.labels(copy.location).inc(size)
        await self.placements.done(copy.digest, copy.location)
        _log.info("blob placed", digest=copy.digest, location=copy.location, source=source.name)


async def find_blobs(locations: Locations, sizes: dict[str, int]) -> dict[str, list[str]]:
    """Which locations hold each blob of ``sizes`` (digest: size), by asking each; an object
    of another size (a copy cut short outside Wharf) does not count."""
    found: dict[str, list[str]] = {}
    limit = asyncio.Semaphore(16)

    async def look(digest: str, size: int) -> None:
        parsed = Digest.parse(digest)
        async with limit:
            for name in locations:
                if await locations.stores[name].size(parsed) == size:
                    found.setdefault(digest, []).append(name)

    await asyncio.gather(*(look(digest, size) for digest, size in sizes.items()))
    return found
