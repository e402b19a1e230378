"""Torrent metainfo of the origin's blobs, computed once per blob and kept beside them.

Computed when a large blob is pushed (in the background: the push is acknowledged first) or
else on first request (hashing a 256 MiB blob takes under a second), and stored under
``<data_dir>/torrents/<algorithm>/<hex>.torrent``; concurrent requests share one computation. The bytes are deterministic (``ocicore.torrent``), so any origin replica computes
the same file and a lost one is simply computed again.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import structlog

from ocicore.digest import Digest
from ocicore.singleflight import SingleFlight
from ocicore.torrent import PieceHasher, metainfo
from origin.registry.blobs import BlobInfo, BlobService

_log = structlog.get_logger("wharf.origin.torrents")


class TorrentService:
    def __init__(self, blobs: BlobService, root: Path, precompute_bytes: int = 0) -> None:
        """``precompute_bytes``: blobs pushed this large or larger get their metainfo at
        once (0: only when asked)."""
        self.blobs = blobs
        self.root = root
        self.precompute_bytes = precompute_bytes
        self._flights: SingleFlight[bytes] = SingleFlight()
        self._tasks: set[asyncio.Task[bytes]] = set()

    def pushed(self, name: str, digest: Digest, size: int) -> None:
        """A blob was pushed: compute its metainfo now if it is large enough for a swarm."""
        if not self.precompute_bytes or size < self.precompute_bytes:
            return
        task = asyncio.create_task(self.get(name, digest), name=f"metainfo {digest}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[bytes]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning("metainfo not computed", error=str(task.exception()))

    async def close(self) -> None:
        """Cancel what is being computed (it is computed again when asked)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self, digest: Digest) -> None:
        """Garbage collection deleted the blob: its metainfo goes too."""
        self._path(digest).unlink(missing_ok=True)

    def _path(self, digest: Digest) -> Path:
        return self.root / digest.algorithm / f"{digest.encoded}.torrent"

    async def get(self, name: str, digest: Digest) -> bytes:
        """The metainfo of a blob ``name`` holds (BLOB_UNKNOWN otherwise)."""
        info = await self.blobs.stat(name, digest)
        path = self._path(digest)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            pass
        return await self._flights.run(str(digest), lambda: self._compute(info, path))

    async def _compute(self, info: BlobInfo, target: Path) -> bytes:
        pieces = PieceHasher(info.size)
        async for chunk in info.store.read(info.digest):
            await asyncio.to_thread(pieces.update, chunk)
        data = await asyncio.to_thread(metainfo, info.digest.encoded, info.size, pieces.finish())
        await asyncio.to_thread(_write, target, data)
        return data


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{uuid.uuid4().hex}.tmp")
    temp.write_bytes(data)
    os.replace(temp, target)
