"""An edge seeds the large blobs it holds to its peers.

Each blob at or above ``swarm_threshold_bytes`` gets its torrent metainfo computed once (the
same bytes give the same info-hash on every node), saved under ``<data_dir>/torrents/``, and is
seeded without re-hashing; an evicted blob's torrent is removed; a restart seeds again what is
on disk from the saved metainfo.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog

from edge.store import BlobStore
from ocicore.digest import Digest
from ocicore.torrent import Swarm, metainfo

_log = structlog.get_logger("wharf.edge.seeding")


class Seeder:
    def __init__(self, store: BlobStore, swarm: Swarm, folder: Path, threshold: int) -> None:
        self.store = store
        self.swarm = swarm
        self.folder = folder
        self.threshold = threshold
        self.seeding: dict[str, str] = {}  # digest -> info-hash
        folder.mkdir(parents=True, exist_ok=True)

    def _file(self, digest: Digest) -> Path:
        return self.folder / f"{digest.algorithm}-{digest.encoded}.torrent"

    async def add(self, digest: Digest) -> None:
        """Seed a blob the store holds (computing its metainfo the first time)."""
        size = self.store.size(digest)
        if size is None or size < self.threshold or str(digest) in self.seeding:
            return
        path = self.store.path(digest)
        file = self._file(digest)
        try:
            data = await asyncio.to_thread(file.read_bytes)
        except FileNotFoundError:
            data = await asyncio.to_thread(metainfo, path, size)
            await asyncio.to_thread(file.write_bytes, data)
        self.seeding[str(digest)] = self.swarm.seed(data, path.parent)

    def evicted(self, digest: str) -> None:
        info_hash = self.seeding.pop(digest, None)
        if info_hash is not None:
            self.swarm.remove(info_hash)
        with contextlib.suppress(FileNotFoundError):
            self._file(Digest.parse(digest)).unlink()

    async def resume(self) -> None:
        """Seed again, after a restart, the large blobs on disk that have saved metainfo."""
        for file in sorted(self.folder.glob("*.torrent")):
            algorithm, _, encoded = file.stem.partition("-")
            digest = Digest.parse(f"{algorithm}:{encoded}")
            if self.store.size(digest) is None:
                file.unlink(missing_ok=True)  # evicted while the edge was down
                continue
            await self.add(digest)
        if self.seeding:
            _log.info("seeding", blobs=len(self.seeding))
