"""A BitTorrent peer that lies: a real libtorrent session seeding a corrupted copy of a blob.

libtorrent checks pieces before it sends them in seed mode, so an honest session never sends
bad bytes; this one is told (resume data, ``no_verify_files``) that it has every piece, and
sends what its file holds. Used to show that a corrupt peer is banned and costs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import libtorrent as lt

from ocicore.torrent import PEERS_FROM_GOSSIP


class CorruptPeer:
    def __init__(self, metainfo: bytes, data: bytes, folder: Path) -> None:
        info = lt.torrent_info(metainfo)
        corrupt = bytearray(data)
        for offset in range(0, len(corrupt), info.piece_length()):
            corrupt[offset] ^= 0xFF  # every piece fails its hash
        folder.mkdir(parents=True, exist_ok=True)
        (folder / info.name()).write_bytes(bytes(corrupt))
        settings = {**PEERS_FROM_GOSSIP, "listen_interfaces": "127.0.0.1:0"}
        self.session = lt.session(cast(Any, settings))  # set up as an edge's, to be found
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(folder)
        params.have_pieces = [True] * info.num_pieces()
        params.flags |= lt.torrent_flags.no_verify_files
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        self.handle = self.session.add_torrent(params)

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def uploaded(self) -> int:
        return int(self.handle.status().total_payload_upload)

    def close(self) -> None:
        self.session.pause()
        del self.session
