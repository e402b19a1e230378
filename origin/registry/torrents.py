"""Torrent metainfo of the origin's blobs, computed once per blob and kept beside them.

Computed on first request (hashing a 256 MiB blob takes under a second) and stored under
``<data_dir>/torrents/<algorithm>/<hex>.torrent``; concurrent first requests share one
computation. The bytes are deterministic (``ocicore.torrent``), so any origin replica computes
the same file and a lost one is simply computed again.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from ocicore.digest import Digest
from ocicore.singleflight import SingleFlight
from ocicore.torrent import metainfo
from origin.registry.blobs import BlobService


class TorrentService:
    def __init__(self, blobs: BlobService, root: Path) -> None:
        self.blobs = blobs
        self.root = root
        self._flights: SingleFlight[bytes] = SingleFlight()

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
        return await self._flights.run(
            str(digest), lambda: self._compute(info.path, info.size, path)
        )

    async def _compute(self, blob: Path, size: int, target: Path) -> bytes:
        data = await asyncio.to_thread(metainfo, blob, size)
        await asyncio.to_thread(_write, target, data)
        return data


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{uuid.uuid4().hex}.tmp")
    temp.write_bytes(data)
    os.replace(temp, target)
