"""Concurrent calls for one key share one execution (a thundering herd becomes one request).

A caller that is cancelled does not cancel the shared work for the others: the work runs in
its own task and every caller waits on it, shielded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SingleFlight(Generic[V]):
    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[V]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[V]]) -> V:
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._flights[key] = task
            task.add_done_callback(lambda _: self._flights.pop(key, None))
        return await asyncio.shield(task)

    def __len__(self) -> int:
        return len(self._flights)
