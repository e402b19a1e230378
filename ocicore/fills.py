"""One fill per missing blob, however many clients ask at once.

The first request for a missing digest starts a :class:`Fill`: a task of its own, detached
from that request (a client that leaves aborts nothing), bounded by its own deadline. The
producer announces the blob's size as soon as its source answers, then appends bytes to a
temporary file; every client, the first one included, *tails* that file from the offset it
wants, so bytes reach them as they arrive. A fill ends committed (the producer verified the
digest and moved the file into place) or failed, in which case every tail raises
:class:`FillFailed` and its client's transfer must be aborted, never completed short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import structlog

_log = structlog.get_logger("wharf.fills")
READ_CHUNK = 1 << 20


class FillFailed(Exception):
    """The fill could not complete; ``status`` is what its source said (404, 502, ...)."""

    def __init__(self, reason: str, status: int = 502) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Busy(Exception):
    """Too many fills at once."""


@dataclass(frozen=True)
class Head:
    size: int
    headers: dict[str, str] = field(default_factory=dict)


class Fill:
    def __init__(self, key: str, path: Path) -> None:
        self.key = key
        self.path = path
        self.written = 0
        self.waiters = 0
        self._head: asyncio.Future[Head] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Condition()
        self._error: FillFailed | None = None
        self._done = False
        self._held = False
        self._verified = False
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    # -- the producer ------------------------------------------------------------------------
    def begin(self, head: Head) -> None:
        if not self._head.done():
            self._head.set_result(head)

    async def verified(self) -> None:
        """The bytes written are the whole blob and match its digest: clients may have the
        last byte now, while the producer syncs and commits them."""
        self._verified = True
        async with self._changed:
            self._changed.notify_all()

    def hold(self) -> None:
        """Deliver nothing until :meth:`release`: for a source whose bytes must be verified
        before anyone sees them (a peer, which could be wrong where the origin is not)."""
        self._held = True

    async def release(self) -> None:
        self._held = False
        async with self._changed:
            self._changed.notify_all()

    async def reset(self) -> None:
        """Forget the bytes written so far (only while held: nobody has seen them)."""
        assert self._held, "bytes clients may have read cannot be taken back"
        await asyncio.to_thread(os.ftruncate, self._fd, 0)
        self.written = 0

    def retarget(self, path: Path) -> None:
        """Fill ``path`` instead (created empty), for a source that writes the file itself;
        only before :meth:`begin`, when no client has opened the old one."""
        assert not self._head.done(), "clients may be reading the old file"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path, self._fd = path, fd

    async def advance(self, written: int) -> None:
        """The first ``written`` bytes are in the file (put there by another writer)."""
        if written > self.written:
            self.written = written
            async with self._changed:
                self._changed.notify_all()

    async def append(self, data: bytes) -> None:
        offset = self.written
        await asyncio.to_thread(os.pwrite, self._fd, data, offset)
        self.written = offset + len(data)
        async with self._changed:
            self._changed.notify_all()

    async def sync(self) -> None:
        """Flush the bytes to disk before the producer commits them."""
        await asyncio.to_thread(os.fsync, self._fd)

    async def end(self, error: FillFailed | None = None) -> None:
        self._error = error
        self._done = True
        os.close(self._fd)
        if not self._head.done():
            self._head.set_exception(error or FillFailed("the source sent nothing"))
            self._head.exception()  # retrieved: nobody may be waiting for it
        async with self._changed:
            self._changed.notify_all()

    @property
    def failed(self) -> bool:
        return self._error is not None

    # -- the clients ---------------------------------------------------------------------------
    async def head(self) -> Head:
        """The blob's size and headers, once the source has answered (callers bound the wait:
        the fill goes on if they stop waiting)."""
        return await asyncio.shield(self._head)

    async def tail(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive; None: all) as they arrive. Raises
        :class:`FillFailed` if the fill fails before they all have.

        The blob's last byte is held back until the producer has verified the digest, so no
        client ever receives a whole body that turns out wrong; a range that stops short of
        the end waits for the verdict before its first byte.
        """
        size = (await self._head).size
        end = size if end is None else min(end, size)
        fd = os.open(self.path, os.O_RDONLY)  # before a commit renames it: the fd survives
        self.waiters += 1
        try:
            if end < size:
                await self.wait()
            offset = start
            while offset < end:
                async with self._changed:
                    await self._changed.wait_for(partial(self._past, offset, size))
                if self._error is not None:
                    raise self._error
                available = min(self._deliverable(size), end)
                if available <= offset:
                    raise FillFailed("the source ended early")
                while offset < available:
                    n = min(READ_CHUNK, available - offset)
                    chunk = await asyncio.to_thread(os.pread, fd, n, offset)
                    if not chunk:
                        raise FillFailed("the fill's file was cut short")
                    offset += len(chunk)
                    yield chunk
            if not self._verified:
                await self.wait()  # the verdict, also for an empty blob (nothing held back)
        finally:
            self.waiters -= 1
            os.close(fd)

    def _deliverable(self, size: int) -> int:
        """How far clients may read: all once verified, short of the last byte before, and
        nothing while held."""
        if self._done or self._verified:
            return self.written
        return 0 if self._held else min(self.written, size - 1)

    def _past(self, offset: int, size: int) -> bool:
        return self._deliverable(size) > offset or self._done

    async def wait(self) -> None:
        """Until the fill has ended; raises if it failed."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._done)
        if self._error is not None:
            raise self._error


Produce = Callable[[Fill], Awaitable[None]]


class Fills:
    """The fills in flight, one per key, at most ``limit`` at once."""

    def __init__(self, limit: int, deadline: float) -> None:
        self.limit = limit
        self.deadline = deadline
        self._fills: dict[str, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._fills)

    def get(self, key: str) -> Fill | None:
        return self._fills.get(key)

    def start(self, key: str, path: Path, produce: Produce) -> Fill:
        """The fill for ``key``: the one in flight, or a new one running ``produce``."""
        found = self._fills.get(key)
        if found is not None:
            return found
        if len(self._fills) >= self.limit:
            raise Busy(key)
        fill = Fill(key, path)
        self._fills[key] = fill
        task = asyncio.create_task(self._run(fill, produce), name=f"fill {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill

    async def _run(self, fill: Fill, produce: Produce) -> None:
        error: FillFailed | None = None
        try:
            async with asyncio.timeout(self.deadline):
                await produce(fill)
        except FillFailed as exc:
            error = exc
            if exc.status >= 500:
                _log.warning("fill failed", key=fill.key, reason=exc.reason)
        except TimeoutError:
            error = FillFailed("the fill ran past its deadline", 504)
        except asyncio.CancelledError:
            error = FillFailed("the edge is shutting down", 503)
            raise
        except Exception as exc:
            _log.exception("fill failed", key=fill.key)
            error = FillFailed(f"{type(exc).__name__}", 502)
        finally:
            self._fills.pop(fill.key, None)
            await fill.end(error)
            if error is not None:
                with contextlib.suppress(FileNotFoundError):
                    fill.path.unlink()

    async def settled(self) -> None:
        """Until no fill is running."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self, grace: float = 10.0) -> None:
        """Let running fills finish for ``grace`` seconds (those whose clients are done may
        still be committing), then cancel the rest."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
