"""An edge seeds the large blobs it holds to its peers.

Each blob at or above ``swarm_threshold_bytes`` gets its torrent metainfo computed once (the
same bytes give the same info-hash on every node) or kept from the swarm fill that fetched it,
saved under ``<data_dir>/torrents/``, and is seeded without re-hashing; an evicted blob's
torrent is removed; a restart seeds again what is on disk from the saved metainfo.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog

from edge.store import BlobStore
from ocicore.digest import Digest
from ocicore.torrent import Swarm, file_metainfo, info_hash, torrent_size

_log = structlog.get_logger("wharf.edge.seeding")


class Seeder:
    def __init__(
        self, store: BlobStore, swarm: Swarm, folder: Path, threshold: int, links: Path
    ) -> None:
        """``links``: where swarm fills leave their file, a second name of the blob's."""
        self.store = store
        self.swarm = swarm
        self.folder = folder
        self.threshold = threshold
        self.links = links
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
            torrent_size(data, digest.encoded)  # a file cut short by a crash: made again
        except (FileNotFoundError, ValueError):
            data = await asyncio.to_thread(file_metainfo, path, size)
            await asyncio.to_thread(_write, file, data)
        self.seeding[str(digest)] = self.swarm.seed(data, path.parent)

    def adopt(self, digest: str, data: bytes) -> None:
        """A blob a swarm fill fetched, already seeding: remember its metainfo."""
        self.save(digest, data)
        self.seeding[digest] = info_hash(data)

    def save(self, digest: str, data: bytes) -> None:
        """Keep the metainfo of a blob about to be committed (seeding it needs no hashing)."""
        _write(self._file(Digest.parse(digest)), data)

    def metainfo(self, digest: str) -> bytes | None:
        """The saved metainfo of a blob being seeded."""
        if digest not in self.seeding:
            return None
        try:
            return self._file(Digest.parse(digest)).read_bytes()
        except FileNotFoundError:
            return None

    def evicted(self, digest: str) -> None:
        info_hash = self.seeding.pop(digest, None)
        if info_hash is not None:
            self.swarm.remove(info_hash)
        parsed = Digest.parse(digest)
        with contextlib.suppress(FileNotFoundError):
            self._file(parsed).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.links / parsed.encoded).unlink()

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


def _write(target: Path, data: bytes) -> None:
    """Whole or not at all: a crash leaves the old file or none, never half of one."""
    temp = target.with_suffix(".tmp")
    temp.write_bytes(data)
    os.replace(temp, target)
