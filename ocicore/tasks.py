"""Long-lived background tasks: started with a component, cancelled and awaited on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog

_log = structlog.get_logger("wharf.tasks")
K = TypeVar("K")


def start_tracked(
    tasks: dict[K, asyncio.Task[None]], key: K, work: Coroutine[Any, Any, None], name: str = ""
) -> None:
    """Run ``work`` as a task kept in ``tasks`` under ``key`` until it ends (a worker's
    per-key tasks in flight: busy keys are skipped, and the set is awaited on shutdown)."""
    task = asyncio.create_task(work, name=name or None)
    tasks[key] = task

    def done(_: asyncio.Task[None]) -> None:
        if tasks.get(key) is task:
            del tasks[key]

    task.add_done_callback(done)


async def repeat(
    work: Callable[[], Awaitable[None]], interval: float, name: str, first_delay: float = 0.0
) -> None:
    """``work`` every ``interval`` seconds until cancelled. A failed round is logged and the
    next one runs: a database that is down now may be back by then."""
    await asyncio.sleep(first_delay)
    while True:
        try:
            await work()
        except Exception:
            _log.exception("background task failed", task=name)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(**coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run the coroutines as named tasks for the duration of the block; on leaving it, cancel
    them and wait until they have stopped (for aiohttp's cleanup contexts)."""
    tasks = [asyncio.create_task(c, name=name) for name, c in coroutines.items()]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
