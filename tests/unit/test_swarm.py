"""Two libtorrent sessions on loopback, driven from the event loop: one seeds a blob it holds
(without re-hashing it), the other fetches it from that peer alone, every piece verified."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from ocicore.torrent import PieceHasher, Swarm, metainfo

MiB = 1 << 20


async def test_a_blob_moves_between_two_swarms(tmp_path: Path) -> None:
    data = os.urandom(8 * MiB + 777)
    name = hashlib.sha256(data).hexdigest()
    seeder_dir, leecher_dir = tmp_path / "seeder", tmp_path / "leecher"
    seeder_dir.mkdir()
    leecher_dir.mkdir()
    (seeder_dir / name).write_bytes(data)
    pieces = PieceHasher(len(data))
    for start in range(0, len(data), 3 * MiB):  # fed in slices that straddle pieces
        pieces.update(data[start : start + 3 * MiB])
    torrent = metainfo(name, len(data), pieces.finish())

    seeder, leecher = Swarm(), Swarm()
    try:
        info_hash = seeder.seed(torrent, seeder_dir)
        async with asyncio.timeout(30):
            await leecher.download(torrent, leecher_dir, [("127.0.0.1", seeder.port)])
        assert (leecher_dir / name).read_bytes() == data
        assert leecher.torrents() == 1
        async with asyncio.timeout(5):  # libtorrent says when it has let go
            await leecher.remove(info_hash)
        assert leecher.torrents() == 0
        async with asyncio.timeout(5):  # and a torrent it does not have is no wait at all
            await leecher.remove(info_hash)
    finally:
        seeder.close()
        leecher.close()
