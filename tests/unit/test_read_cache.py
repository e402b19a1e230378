"""The origin's read cache: one load per miss, however many requests wait for it."""

from __future__ import annotations

import asyncio

import pytest

from origin.registry.cache import ReadCache


async def test_concurrent_misses_share_one_load() -> None:
    cache: ReadCache[str] = ReadCache(maxsize=10, ttl=60)
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)
        return "value"

    results = await asyncio.gather(*(cache.get(("r", "t"), load) for _ in range(50)))
    assert results == ["value"] * 50
    assert loads == 1


async def test_waiters_load_again_when_the_loader_is_cancelled() -> None:
    cache: ReadCache[str] = ReadCache(maxsize=10, ttl=60)
    started = asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(10)
        return "never"

    async def fast() -> str:
        return "fresh"

    loader = asyncio.create_task(cache.get(("r", "t"), slow))
    await started.wait()
    waiter = asyncio.create_task(cache.get(("r", "t"), fast))
    await asyncio.sleep(0)
    loader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loader
    assert await waiter == "fresh"


async def test_a_write_during_a_load_keeps_the_old_value_out() -> None:
    cache: ReadCache[str] = ReadCache(maxsize=10, ttl=60)
    release = asyncio.Event()

    async def stale() -> str:
        await release.wait()
        return "stale"

    async def current() -> str:
        return "current"

    reading = asyncio.create_task(cache.get(("r", "t"), stale))
    await asyncio.sleep(0)
    cache.drop(("r", "t"))  # a write lands while the read is in the database
    release.set()
    assert await reading == "stale"  # that request saw the database before the write
    assert await cache.get(("r", "t"), current) == "current"


async def test_failures_reach_every_waiter_and_are_not_cached() -> None:
    cache: ReadCache[str] = ReadCache(maxsize=10, ttl=60)

    async def broken() -> str:
        await asyncio.sleep(0.01)
        raise RuntimeError("database down")

    results = await asyncio.gather(
        *(cache.get(("r", "t"), broken) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)

    async def ok() -> str:
        return "back"

    assert await cache.get(("r", "t"), ok) == "back"
