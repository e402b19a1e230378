"""A short-lived cache of the origin's hottest reads: manifests by tag or digest, blob sizes.

A database round trip through SQLAlchemy's async engine costs about a millisecond; a cache hit
costs microseconds. Writes made through this process invalidate at once, so a single origin is
exactly consistent. ``ttl`` bounds how long a change made by *another* origin process stays
unseen. A read that raced with an invalidation is not cached (the generation check), so an
entry can never outlive the write that made it stale.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cachetools import TTLCache

V = TypeVar("V")
Key = tuple[str, str]  # (repository, reference)


class ReadCache(Generic[V]):
    def __init__(self, maxsize: int, ttl: float) -> None:
        self._entries: TTLCache[Key, V] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._generation = 0

    async def get(self, key: Key, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value, or ``load()``'s (cached unless it is None or raced a write)."""
        found = self._entries.get(key)
        if found is not None:
            return found
        generation = self._generation
        value = await load()
        if value is not None and generation == self._generation:
            self._entries[key] = value
        return value

    def invalidate(self, matches: Callable[[Key, V], bool]) -> None:
        self._generation += 1
        for key in [k for k, v in self._entries.items() if matches(k, v)]:
            self._entries.pop(key, None)

    def drop(self, key: Key) -> None:
        self._generation += 1
        self._entries.pop(key, None)
