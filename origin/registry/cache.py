"""A short-lived cache of the origin's hottest reads: manifests by tag or digest, blob sizes.

A database round trip through SQLAlchemy's async engine costs about a millisecond; a cache hit
costs microseconds. Writes made through this process invalidate at once, so a single origin is
exactly consistent. ``ttl`` bounds how long a change made by *another* origin process stays
unseen. A read that raced with an invalidation is not cached (the generation check), so an
entry can never outlive the write that made it stale. Concurrent misses of one key share a
single load, so an entry expiring under load costs one query, not one per waiting request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")
Key = tuple[str, str]  # (repository, reference)


class _Abandoned(Exception):
    """The load a request was waiting for was cancelled with its own request."""


class ReadCache(Generic[V]):
    def __init__(self, maxsize: int, ttl: float) -> None:
        self._entries: TTLCache[Key, V] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._loading: dict[Key, asyncio.Future[V | None]] = {}
        self._generation = 0

    async def get(self, key: Key, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value, or ``load()``'s (cached unless it is None or raced a write)."""
        while (found := self._entries.get(key)) is None:
            pending = self._loading.get(key)
            if pending is None:
                return await self._load(key, load)
            try:
                return await asyncio.shield(pending)
            except _Abandoned:
                continue  # its loader was cancelled: load again (or join a newer load)
        return found

    async def _load(self, key: Key, load: Callable[[], Awaitable[V | None]]) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        generation = self._generation
        try:
            value = await load()
        except asyncio.CancelledError:
            future.set_exception(_Abandoned())
            future.exception()  # mark it retrieved: waiters handle it themselves
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            if self._loading.get(key) is future:
                del self._loading[key]
        future.set_result(value)
        if value is not None and generation == self._generation:
            self._entries[key] = value
        return value

    def invalidate(self, matches: Callable[[Key, V], bool]) -> None:
        self._generation += 1
        self._loading.clear()  # loads under way may predate the write: nobody new joins them
        for key in [k for k, v in self._entries.items() if matches(k, v)]:
            self._entries.pop(key, None)

    def drop(self, key: Key) -> None:
        self._generation += 1
        self._loading.clear()
        self._entries.pop(key, None)
