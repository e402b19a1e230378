"""BitTorrent metainfo for blobs, the one module of Wharf that imports libtorrent.

Metainfo is deterministic: the same bytes give the same info-hash on every node. The torrent
has one file named by the digest's hex, an explicit piece size from :func:`piece_size`, no
creation date and no creator, and is v1 only (the widest support; a v2 merkle tree would add
nothing a registry needs: the blob's own digest is checked before commit anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import libtorrent as lt

MIN_PIECE = 256 * 1024
TARGET_PIECES = 2000
MAX_PIECE = 16 * 1024 * 1024


def piece_size(size: int) -> int:
    """A power of two of at least 256 KiB keeping the piece count in the low thousands (at
    most 16 MiB: libtorrent's web seed requests stay small enough)."""
    piece = MIN_PIECE
    while piece < MAX_PIECE and size > piece * TARGET_PIECES:
        piece *= 2
    return piece


def metainfo(path: Path, size: int) -> bytes:
    """The bencoded metainfo of the blob at ``path`` (its file name is the digest's hex).
    Hashes every piece: call it in a thread."""
    entry = lt.create_file_entry(path.name, size)
    creator = lt.create_torrent([entry], piece_size(size), lt.create_torrent.v1_only)
    lt.set_piece_hashes(creator, str(path.parent))
    creator.set_creation_date(0)
    return bytes(lt.bencode(creator.generate()))


def info_hash(data: bytes) -> str:
    """The v1 info-hash (hex) of bencoded metainfo."""
    return str(lt.torrent_info(data).info_hashes().v1)


class Swarm:
    """One libtorrent session for the process, tied to the event loop without blocking it:
    libtorrent writes to a pipe when alerts wait, the loop wakes a pump that pops them.

    TCP only (uTP measured 20x slower here), no DHT, LSD, UPnP or NAT-PMP: peers come from
    gossip through :meth:`connect`. Several connections per IP are allowed (peers behind one
    address: loopback, NAT, containers).
    """

    def __init__(self, listen: str = "127.0.0.1:0", upload_rate: int = 0) -> None:
        settings = {
            "listen_interfaces": listen,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "allow_multiple_connections_per_ip": True,
            "alert_mask": lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.storage_notification,
            "upload_rate_limit": upload_rate,
        }
        self.session = lt.session(cast(Any, settings))  # the binding takes a dict
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(write_fd, False)
        self._write_fd = write_fd
        self.session.set_alert_fd(write_fd)
        self._finished: dict[str, asyncio.Future[None]] = {}
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._read_fd, self._pump)

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def _pump(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 4096)
        for alert in self.session.pop_alerts():
            if isinstance(alert, lt.torrent_finished_alert):
                key = str(alert.handle.info_hashes().v1)
                future = self._finished.get(key)
                if future is not None and not future.done():
                    future.set_result(None)

    def seed(self, data: bytes, folder: Path) -> str:
        """Seed the blob described by ``data`` (its metainfo) from ``folder``, trusting the
        file (seed mode: pieces are checked as they are first sent); its info-hash."""
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(data)
        params.save_path = str(folder)
        params.flags |= lt.torrent_flags.seed_mode
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        handle = self.session.add_torrent(params)
        return str(handle.info_hashes().v1)

    async def download(
        self, data: bytes, folder: Path, peers: Sequence[tuple[str, int]] = ()
    ) -> None:
        """Fetch the blob described by ``data`` into ``folder`` from ``peers`` (and whoever
        they introduce); returns once every piece is there and hash-checked."""
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(data)
        params.save_path = str(folder)
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        handle = self.session.add_torrent(params)
        key = str(handle.info_hashes().v1)
        future = self._finished[key] = self._loop.create_future()
        for peer in peers:
            handle.connect_peer(peer)
        if handle.status().is_seeding:
            future.set_result(None)
        try:
            await future
        finally:
            self._finished.pop(key, None)

    def remove(self, info_hash: str) -> None:
        handle = self.session.find_torrent(lt.sha1_hash(bytes.fromhex(info_hash)))
        if handle.is_valid():
            self.session.remove_torrent(handle)

    def torrents(self) -> int:
        return len(self.session.get_torrents())

    def close(self) -> None:
        self._loop.remove_reader(self._read_fd)
        self.session.pause()
        del self.session  # libtorrent's destructor stops its threads
        os.close(self._read_fd)
        os.close(self._write_fd)
