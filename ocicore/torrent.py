"""BitTorrent metainfo for blobs, the one module of Wharf that imports libtorrent.

Metainfo is deterministic: the same bytes give the same info-hash on every node. The torrent
has one file named by the digest's hex, an explicit piece size from :func:`piece_size`, no
creation date and no creator, and is v1 only (the widest support; a v2 merkle tree would add
nothing a registry needs: the blob's own digest is checked before commit anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import libtorrent as lt
import structlog

_log = structlog.get_logger("wharf.swarm")
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


def metainfo(name: str, size: int, pieces: Sequence[bytes]) -> bytes:
    """The bencoded metainfo of a blob of ``size`` bytes whose file is ``name`` (the digest's
    hex), from the SHA-1 of each of its pieces (:func:`piece_size` long)."""
    entry = lt.create_file_entry(name, size)
    creator = lt.create_torrent([entry], piece_size(size), lt.create_torrent.v1_only)
    if creator.num_pieces() != len(pieces):
        raise ValueError(f"{len(pieces)} piece hashes for {creator.num_pieces()} pieces")
    for index, piece in enumerate(pieces):
        creator.set_hash(index, piece)
    creator.set_creation_date(0)
    return bytes(lt.bencode(creator.generate()))


class PieceHasher:
    """SHA-1 of each piece of a byte stream fed in order (call :meth:`update` in a thread)."""

    def __init__(self, size: int) -> None:
        self.piece = piece_size(size)
        self.pieces: list[bytes] = []
        self._current = hashlib.sha1(usedforsecurity=False)  # BitTorrent v1 pieces
        self._filled = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.piece - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.piece:
                self.pieces.append(self._current.digest())
                self._current, self._filled = hashlib.sha1(usedforsecurity=False), 0

    def finish(self) -> list[bytes]:
        if self._filled:
            self.pieces.append(self._current.digest())
            self._filled = 0
        return self.pieces


def file_metainfo(path: Path, size: int) -> bytes:
    """:func:`metainfo` of the blob in file ``path`` (named by its hex). Reads it: call it in
    a thread."""
    pieces = PieceHasher(size)
    with path.open("rb") as f:
        while chunk := f.read(pieces.piece):
            pieces.update(chunk)
    return metainfo(path.name, size, pieces.finish())


def info_hash(data: bytes) -> str:
    """The v1 info-hash (hex) of bencoded metainfo."""
    return str(lt.torrent_info(data).info_hashes().v1)


def torrent_size(data: bytes, hexdigest: str) -> int:
    """The size of the blob that metainfo describes, once it is seen to describe the blob
    ``hexdigest`` names (one file of that name); ValueError otherwise."""
    try:
        info = lt.torrent_info(data)
    except RuntimeError as exc:
        raise ValueError(f"not metainfo: {exc}") from None
    if info.num_files() != 1 or info.name() != hexdigest:
        raise ValueError("the metainfo describes other files")
    return int(info.total_size())


@dataclass(frozen=True)
class SwarmSettings:
    """How a node's session behaves toward its peers (0: no limit)."""

    listen: str = "127.0.0.1:0"  # HOST:PORT, port 0: any free port
    upload_rate: int = 0  # bytes per second, to all peers together
    download_rate: int = 0
    connections: int = 200


@dataclass(frozen=True)
class SwarmStats:
    """The session's counters, as of its last report."""

    sent: int = 0  # payload bytes uploaded to peers
    peers: int = 0  # connected now


class Download:
    """A torrent being fetched, as the event loop sees it: which pieces have passed their hash
    check (``prefix``: how many from the first are all there), when the last one did, and
    how many bytes came from peers and from web seeds."""

    def __init__(self, handle: Any, info: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.handle = handle
        self.key = str(handle.info_hashes().v1)
        self.pieces = int(info.num_pieces())
        self.piece_length = int(info.piece_length())
        self.size = int(info.total_size())
        self.hashes = [bytes(info.hash_for_piece(i)) for i in range(self.pieces)]  # SHA-1
        self.prefix = 0
        self.progressed = time.monotonic()
        self.finished: asyncio.Future[None] = loop.create_future()
        self.web_seeds: set[str] = set()
        self.on_piece: Callable[[], None] = lambda: None
        self._have = bytearray(self.pieces)
        self._deadline_from = 0
        self._peers: dict[str, int] = {}  # bytes received, by peer, as last observed
        self._web: dict[str, int] = {}

    @property
    def prefix_bytes(self) -> int:
        return min(self.prefix * self.piece_length, self.size)

    def span(self, piece: int) -> tuple[int, int]:
        """Where piece ``piece`` lies in the blob: [start, end)."""
        start = piece * self.piece_length
        return start, min(start + self.piece_length, self.size)

    def connect(self, peers: Iterable[tuple[str, int]]) -> None:
        """Ask these peers (again: libtorrent ignores those already connected)."""
        for peer in peers:
            self.handle.connect_peer(peer)

    def add_web_seed(self, url: str) -> None:
        """A BEP 19 web seed: an HTTP URL answering Range requests for the whole blob."""
        if url not in self.web_seeds:
            self.web_seeds.add(url)
            self.handle.add_url_seed(url)

    def hurry(self, pieces: int, step_ms: int = 100) -> None:
        """Ask for the next ``pieces`` missing pieces after the prefix first, in order, so a
        client reading from the start gets bytes soon (libtorrent's piece deadlines)."""
        start = max(self.prefix, self._deadline_from)
        end = min(self.prefix + pieces, self.pieces)
        for index in range(start, end):
            if not self._have[index]:
                self.handle.set_piece_deadline(index, (index - self.prefix) * step_ms)
        self._deadline_from = max(self._deadline_from, end)

    def _piece(self, index: int) -> None:
        if 0 <= index < self.pieces and not self._have[index]:
            self._have[index] = 1
            self.progressed = time.monotonic()
            while self.prefix < self.pieces and self._have[self.prefix]:
                self.prefix += 1
            self.on_piece()

    def observe(self) -> None:
        """Note how much each connected peer and web seed has sent (a web seed is gone as
        soon as the torrent finishes: call this as pieces arrive)."""
        for peer in self.handle.get_peer_info():
            totals = self._web if peer.connection_type == lt.peer_info.web_seed else self._peers
            key = f"{peer.ip}"
            totals[key] = max(totals.get(key, 0), int(peer.total_download))

    def sources(self) -> tuple[int, int]:
        """Payload bytes received (from peers, from web seeds). What arrived since the last
        :meth:`observe` goes to the only kind of source seen, or is shared in proportion."""
        received = int(self.handle.status().total_payload_download)
        peers, web = sum(self._peers.values()), sum(self._web.values())
        seen = peers + web
        if seen == 0:
            return (0, received) if self.web_seeds else (received, 0)
        web = min(received, round(received * web / seen))
        return received - web, web

    def _end(self, error: str | None = None) -> None:
        if not self.finished.done():
            if error is None:
                self.finished.set_result(None)
            else:
                self.finished.set_exception(RuntimeError(error))
                self.finished.exception()  # retrieved: the fill may have stopped waiting


# Peers come from gossip, over TCP (uTP measured 20x slower here), several behind one address.
PEERS_FROM_GOSSIP: dict[str, object] = {
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "allow_multiple_connections_per_ip": True,
}


def _redact(message: str) -> str:
    """A libtorrent message without the query strings of the URLs it names (tokens)."""
    return re.sub(r"\?[^\s)]*", "?...", message)


class Swarm:
    """One libtorrent session for the process, tied to the event loop without blocking it:
    libtorrent writes to a pipe when alerts wait, the loop wakes a pump that pops them.

    TCP only (uTP measured 20x slower here), no DHT, LSD, UPnP or NAT-PMP: peers come from
    gossip through :meth:`Download.connect`. Several connections per IP are allowed (peers
    behind one address: loopback, NAT, containers). Rate limits apply to every peer, on the
    local network too (libtorrent exempts it by default; in a datacenter every peer is local).
    """

    def __init__(self, settings: SwarmSettings | None = None) -> None:
        settings = settings or SwarmSettings()
        pack = {
            **PEERS_FROM_GOSSIP,
            "listen_interfaces": settings.listen,
            # Blocks web seeds on private addresses with a query string (ours: the origin,
            # with its token). Protects clients that add torrents from strangers; every
            # torrent here comes from our origin, and carries no URLs of its own.
            "ssrf_mitigation": False,
            "alert_mask": lt.alert.category_t.error_notification
            | lt.alert.category_t.status_notification
            | lt.alert.category_t.storage_notification
            | lt.alert.category_t.piece_progress_notification
            | lt.alert.category_t.peer_notification,
            "upload_rate_limit": settings.upload_rate,
            "download_rate_limit": settings.download_rate,
            "connections_limit": settings.connections,
            "alert_queue_size": 10_000,
        }
        self.session = lt.session(cast(Any, pack))  # the binding takes a dict
        if settings.upload_rate or settings.download_rate:
            self.session.apply_settings({"ignore_limits_on_local_network": False})
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(write_fd, False)
        self._write_fd = write_fd
        self.session.set_alert_fd(write_fd)
        self._downloads: dict[str, Download] = {}
        self.active: set[str] = set()  # info-hashes of the torrents seeding or fetching
        self._removed: dict[str, asyncio.Future[None]] = {}
        self.stats = SwarmStats()
        self.on_ban: Callable[[], None] = lambda: None  # a peer sent pieces that failed
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._read_fd, self._pump)

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def _pump(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 4096)
        for alert in self.session.pop_alerts():
            if isinstance(alert, lt.session_stats_alert):
                self._stats(alert.values)
                continue
            if isinstance(alert, lt.peer_ban_alert):
                self.on_ban()
                _log.warning("banned a peer", peer=str(alert.endpoint), why="corrupt pieces")
            if isinstance(alert, lt.torrent_removed_alert):  # its handle is usually invalid
                removed = self._removed.pop(str(alert.info_hashes.v1), None)
                if removed is not None and not removed.done():
                    removed.set_result(None)
                continue
            handle = getattr(alert, "handle", None)
            if handle is None or not handle.is_valid():
                continue
            key = str(handle.info_hashes().v1)
            if isinstance(alert, (lt.url_seed_alert, lt.file_error_alert, lt.torrent_error_alert)):
                _log.warning(
                    "swarm trouble", alert=type(alert).__name__, what=_redact(alert.message())
                )
            download = self._downloads.get(key)
            if download is None:
                continue
            if isinstance(alert, lt.piece_finished_alert):
                download._piece(int(alert.piece_index))
            elif isinstance(alert, lt.torrent_finished_alert):
                download._end()
            elif isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
                download._end(alert.message())

    def _stats(self, values: Any) -> None:
        def value(name: str) -> int:
            return int(values.get(name, 0))  # a dict by name in the Python binding

        self.stats = SwarmStats(
            sent=value("net.sent_payload_bytes"),
            peers=value("peer.num_peers_connected"),
        )

    def report(self) -> None:
        """Ask for fresh counters (in :attr:`stats` soon after)."""
        self.session.post_session_stats()

    def seed(self, data: bytes, folder: Path) -> str:
        """Seed the blob described by ``data`` (its metainfo) from ``folder``, trusting the
        file (seed mode: pieces are checked as they are first sent); its info-hash."""
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(data)
        params.save_path = str(folder)
        params.flags |= lt.torrent_flags.seed_mode
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        handle = self.session.add_torrent(params)
        key = str(handle.info_hashes().v1)
        self.active.add(key)
        return key

    def start(self, data: bytes, folder: Path) -> Download:
        """Start fetching the blob described by ``data`` into ``folder`` (where its file, named
        by the digest's hex, may already exist, empty); peers and web seeds come after."""
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(data)
        params.save_path = str(folder)
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        handle = self.session.add_torrent(params)
        download = Download(handle, params.ti, self._loop)
        self._downloads[download.key] = download
        self.active.add(download.key)
        if handle.status().is_seeding:
            download._end()
        return download

    async def download(
        self, data: bytes, folder: Path, peers: Iterable[tuple[str, int]] = ()
    ) -> None:
        """Fetch the blob described by ``data`` into ``folder`` from ``peers`` (and whoever
        they introduce); returns once every piece is there and hash-checked."""
        download = self.start(data, folder)
        download.connect(peers)
        await download.finished

    def remove(self, info_hash: str) -> asyncio.Future[None]:
        """Stop seeding or fetching a torrent (its file stays); the future is done once
        libtorrent has let it go (at once if it had no such torrent)."""
        download = self._downloads.pop(info_hash, None)
        if download is not None:
            download._end("removed")
        self.active.discard(info_hash)
        handle = self.session.find_torrent(lt.sha1_hash(bytes.fromhex(info_hash)))
        removed = self._removed.get(info_hash)
        if removed is None:
            removed = self._loop.create_future()
            if handle.is_valid():
                self._removed[info_hash] = removed
                self.session.remove_torrent(handle)
            else:
                removed.set_result(None)
        return removed

    def release(self, download: Download) -> None:
        """Stop following a finished download (it goes on seeding)."""
        self._downloads.pop(download.key, None)

    def torrents(self) -> int:
        """How many torrents the session holds (asks libtorrent: for tests and tools)."""
        return len(self.session.get_torrents())

    def close(self) -> None:
        self._loop.remove_reader(self._read_fd)
        for download in list(self._downloads.values()):
            download._end("the swarm closed")
        self.session.pause()
        del self.session  # libtorrent's destructor stops its threads
        os.close(self._read_fd)
        os.close(self._write_fd)
