"""Continuous online garbage collection: manifests and blobs nothing reaches are deleted while
pushes and pulls go on (what "reaches" means, and why no push can lose a blob to it:
:mod:`origin.metadata.gc`).

A pass walks every repository, each in a short transaction of its own that holds only that
repository's collection lock (a manifest push into it waits at most that long), then
tombstones blobs no repository links any more and deletes the bytes of those tombstoned a
grace period ago, in every storage location. It runs on the leading replica every
``gc_interval_seconds`` (:mod:`origin.leader`), and on demand (``POST /api/v1/gc``); passes
never overlap, in one process (a lock) or among replicas (a PostgreSQL advisory lock).

Deletions reach the edges through the event feed: a manifest's as ``delete``, a blob's bytes
as ``blob_delete`` (every region gets both, whatever its replication rules).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import insert, select

from ocicore.digest import Digest
from ocicore.uploads import UploadBusy
from origin.locations import Locations
from origin.metadata import gc
from origin.metadata.models import events, repositories
from origin.metadata.store import MetadataStore

_log = structlog.get_logger("wharf.origin.gc")

BATCH = 1000  # blobs tombstoned per transaction
SWEEP_BATCH = 100  # blobs whose rows a sweep holds while it deletes their bytes
DELETES_AT_ONCE = 16
RUN_LOCK = "garbage-collection"  # the lock a pass holds, in a space of its own (in the
RUN_LOCKS = 0x57484750  # repositories' space, its hash could be some repository's id)


class Busy(Exception):
    """Another pass is running (here or on another replica)."""


@dataclass(slots=True)
class Pass:
    """What one pass did."""

    repositories: int = 0
    manifests: int = 0
    links: int = 0
    history: int = 0
    tombstoned: int = 0
    blobs: int = 0
    bytes: int = 0
    seconds: float = 0.0
    deleted_manifests: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int | float]:
        """What it did, in numbers (the API's answer, the log's line)."""
        found = {f.name: getattr(self, f.name) for f in fields(self)}
        del found["deleted_manifests"]
        found["seconds"] = round(self.seconds, 6)
        return found


class Collector:
    def __init__(
        self,
        meta: MetadataStore,
        locations: Locations,
        registry: CollectorRegistry,
        grace_seconds: float,
        default_window_seconds: int,
        forget: list[Callable[[Digest], None]],
        changed: Callable[[], None],
    ) -> None:
        """``forget``: told each blob whose bytes were deleted (caches of where it was);
        ``changed``: told when a pass wrote events to the feed (edges waiting on it)."""
        self.meta = meta
        self.locations = locations
        self.grace = timedelta(seconds=grace_seconds)
        self.default_window = default_window_seconds
        self.forget = forget
        self.changed = changed
        self._one = asyncio.Lock()
        self.passes = Counter(
            "wharf_origin_gc_passes", "Garbage collection passes finished", registry=registry
        )
        self.deleted = Counter(
            "wharf_origin_gc_deleted",
            "What garbage collection deleted: manifests, blob links, blobs",
            ["kind"],
            registry=registry,
        )
        for kind in ("manifest", "link", "blob"):
            self.deleted.labels(kind).inc(0)
        self.freed = Counter(
            "wharf_origin_gc_freed_bytes",
            "Blob bytes garbage collection deleted (in each location)",
            registry=registry,
        )
        self.duration = Gauge(
            "wharf_origin_gc_last_pass_seconds",
            "How long the last garbage collection pass took",
            registry=registry,
        )
        self.finished = Gauge(
            "wharf_origin_gc_last_pass_timestamp_seconds",
            "When the last garbage collection pass finished (unix time)",
            registry=registry,
        )
        self.tombstoned = Gauge(
            "wharf_origin_gc_tombstoned_bytes",
            "Bytes of blobs found unreachable, deleted a grace period later",
            registry=registry,
        )

    async def run(self, interval: float) -> None:
        """A pass every ``interval`` seconds (the leader's worker)."""
        while True:
            try:
                await self.collect()
            except Busy:
                pass
            except Exception:
                _log.exception("garbage collection pass failed")
            await asyncio.sleep(interval)

    async def collect(self) -> Pass:
        """One whole pass; raises :class:`Busy` if one is running already."""
        if self._one.locked():
            raise Busy
        async with self._one:
            try:
                async with self.meta.exclusive(RUN_LOCK, RUN_LOCKS):
                    return await self._collect()
            except UploadBusy:
                raise Busy from None

    async def _collect(self) -> Pass:
        started = time.monotonic()
        done = Pass()
        last = 0
        while True:
            async with self.meta.engine.connect() as conn:
                page = (
                    await conn.execute(
                        select(repositories.c.id, repositories.c.name)
                        .where(repositories.c.id > last)
                        .order_by(repositories.c.id)
                        .limit(BATCH)
                    )
                ).all()
            if not page:
                break
            for repo_id, name in page:
                await self._repository(repo_id, name, done)
            last = page[-1][0]
        await self._blobs(done)
        done.seconds = time.monotonic() - started
        self.passes.inc()
        self.duration.set(done.seconds)
        self.finished.set(time.time())
        if done.manifests or done.blobs:
            self.changed()
        if done.manifests or done.links or done.blobs or done.tombstoned:
            _log.info("garbage collected", **done.counts())
        return done

    async def _repository(self, repo_id: int, name: str, done: Pass) -> None:
        now = datetime.now(UTC)
        done.repositories += 1
        # A survey first, read only: most repositories hold no garbage most of the time, and
        # then no lock is taken and nothing written (on SQLite, no commit to wait for).
        async with self.meta.engine.connect() as conn:
            found = await gc.find_garbage(conn, repo_id, name, now, self.grace, self.default_window)
        if not found:
            return
        async with self.meta.engine.begin() as conn:  # again, under the lock: what counts
            swept = await gc.collect_repository(
                conn, repo_id, name, now, self.grace, self.default_window
            )
        done.manifests += len(swept.manifests)
        done.links += swept.links
        done.history += swept.history
        done.deleted_manifests.extend((name, d) for d in swept.manifests)
        self.deleted.labels("manifest").inc(len(swept.manifests))
        self.deleted.labels("link").inc(swept.links)

    async def _blobs(self, done: Pass) -> None:
        while True:
            async with self.meta.engine.begin() as conn:
                marked = await gc.tombstone(conn, datetime.now(UTC), self.grace, BATCH)
            done.tombstoned += marked
            if marked < BATCH:
                break
        while True:
            async with self.meta.engine.connect() as conn:
                due = await gc.sweepable(conn, datetime.now(UTC), self.grace, BATCH)
            for i in range(0, len(due), SWEEP_BATCH):
                await self._sweep(due[i : i + SWEEP_BATCH], done)
            if len(due) < BATCH:
                break
        async with self.meta.engine.connect() as conn:
            _, pending = await gc.pending(conn)
        self.tombstoned.set(pending)

    async def _sweep(self, digests: list[str], done: Pass) -> None:
        """Delete due blobs: their rows (held until the commit) and, before that commits,
        their bytes in every location. A pass killed half-way leaves the rows tombstoned (the
        next one finishes; an upload meanwhile writes the bytes again: its claim says so)."""
        now = datetime.now(UTC)
        room = asyncio.Semaphore(DELETES_AT_ONCE)

        async def delete_bytes(digest: Digest) -> None:
            async with room:
                for store in self.locations.stores.values():
                    await store.delete(digest)

        async with self.meta.engine.begin() as conn:
            taken = await gc.take(conn, digests, now, self.grace)
            if not taken:
                return
            parsed = [Digest.parse(d) for d in taken]
            await asyncio.gather(*(delete_bytes(d) for d in parsed))
            await conn.execute(
                insert(events),
                [
                    {"repository": "", "kind": "blob_delete", "digest": d, "tag": None, "at": now}
                    for d in taken
                ],
            )
        for digest in parsed:
            for forget in self.forget:
                forget(digest)
        freed = sum(taken.values())
        done.blobs += len(taken)
        done.bytes += freed
        self.deleted.labels("blob").inc(len(taken))
        self.freed.inc(freed)
