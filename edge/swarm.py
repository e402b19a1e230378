"""Large blobs fill through the swarm: pieces from other edges, the origin as web seed.

For a blob of at least ``swarm_threshold_bytes`` the edge asks the origin for its metainfo
(authorized like the blob itself; it brings a short-lived web seed token), asks the digest's
home edge in the region to join the swarm (``GET /v2/<name>/_wharf/torrents/<digest>`` with
the hop header: the home starts its own fill and answers with its swarm port), and fetches
the pieces from the home and from the edges gossip names, same region first.

Only one edge per blob takes pieces from the origin from the start: the home, or an edge
whose home cannot be asked. The others add the origin as web seed only when no new piece has
come for ``swarm_stall_seconds`` (libtorrent pulls from a web seed greedily: added everywhere,
the origin would send a copy per edge), and fall back to plain HTTP from the verified prefix
when it stalls again.

Pieces are hash-checked by libtorrent against the origin's metainfo; those forming a prefix of
the blob are read back from the file, checked again (libtorrent reports a piece before all its
blocks are written), hashed in order into the blob's digest and handed to the fill, so clients
read them while later pieces arrive (pieces just past the prefix get deadlines while a client
waits). The digest is checked before the blob is committed, which the fill's last byte waits
for. A finished torrent goes on seeding from ``<data_dir>/swarm/<hex>``, a hard link to the
committed file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog

from edge.config import EdgeConfig
from edge.metrics import SwarmMetrics
from edge.seeding import Seeder
from edge.upstream import Unreachable, Upstream
from ocicore.auth.enforce import SEED_PARAM
from ocicore.digest import Hasher
from ocicore.fills import Fill, FillFailed, Head
from ocicore.torrent import Download, Swarm, torrent_size

_log = structlog.get_logger("wharf.edge.swarm")

HOP = "X-Wharf-Hop"
PORT = "X-Wharf-Swarm-Port"
SEED_TOKEN = "X-Wharf-Seed-Token"  # noqa: S105 (a header name)
MAX_METAINFO = 4 << 20
HURRY_PIECES = 8  # pieces past the prefix asked for first while a client waits
TICK = 0.25
RECONNECT = 2.0


@dataclass(frozen=True)
class Torrent:
    """A blob's metainfo as the origin gave it, and its web seed token (None: the origin
    asks for no token)."""

    data: bytes
    size: int
    seed_token: str | None


@dataclass(frozen=True)
class Want:
    """One blob to fetch through the swarm."""

    origin: Upstream
    name: str  # the repository at the origin
    digest: str
    hexdigest: str
    auth: str | None

    @property
    def path(self) -> str:
        return f"/v2/{self.name}/_wharf/torrents/{self.digest}"


class EdgeSwarm:
    def __init__(
        self,
        swarm: Swarm,
        seeder: Seeder,
        config: EdgeConfig,
        metrics: SwarmMetrics,
        neighbours: Callable[[], list[tuple[str, int]]],
    ) -> None:
        self.swarm = swarm
        self.seeder = seeder
        self.config = config
        self.metrics = metrics
        self.neighbours = neighbours
        self.folder = config.data_dir / "swarm"
        self._active: dict[str, bytes] = {}  # digest -> metainfo, while fetching
        self._ready: dict[str, asyncio.Future[bytes]] = {}

    def wants(self, size: int | None) -> bool:
        return size is not None and size >= self.config.swarm_threshold_bytes

    def clear(self) -> None:
        """At startup: partial downloads and links of the last run go (what was committed is
        in the store and seeded from there)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.iterdir():
            leftover.unlink(missing_ok=True)

    # -- metainfo ------------------------------------------------------------------------------
    async def metainfo(self, want: Want) -> Torrent:
        """The blob's metainfo from the origin (404, 401 and 403 are final: FillFailed)."""
        async with want.origin.request("GET", want.path, want.auth) as r:
            if r.status in (401, 403, 404):
                raise FillFailed("the origin refused the metainfo", r.status)
            if r.status != 200:
                raise FillFailed(f"the origin answered {r.status} for the metainfo", 502)
            data = await r.content.read(MAX_METAINFO + 1)
            token = r.headers.get(SEED_TOKEN)
        if len(data) > MAX_METAINFO:
            raise FillFailed("the origin's metainfo is too large", 502)
        try:
            size = torrent_size(data, want.hexdigest)
        except ValueError as exc:
            raise FillFailed(f"the origin's metainfo is unusable: {exc}", 502) from None
        return Torrent(data, size, token)

    async def poke(self, home: Upstream, want: Want) -> tuple[str, int] | None:
        """Ask the home edge to join the swarm for this blob; its swarm address, or None."""
        try:
            async with asyncio.timeout(self.config.header_timeout_seconds):
                async with home.request("GET", want.path, want.auth, {HOP: "1"}) as r:
                    port = r.headers.get(PORT, "")
                    if r.status != 200 or not port.isdigit():
                        return None
        except (Unreachable, TimeoutError):
            return None
        host = urlsplit(home.base_url).hostname
        return (host, int(port)) if host else None

    def known(self, digest: str) -> bytes | None:
        """The metainfo of a blob this edge fetches or seeds now."""
        return self._active.get(digest) or self.seeder.metainfo(digest)

    async def joined(self, digest: str) -> bytes:
        """Once this edge's fill of ``digest`` is in the swarm: the blob's metainfo."""
        found = self.known(digest)
        if found is not None:
            return found
        future = self._ready.get(digest)
        if future is None:
            future = self._ready[digest] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(future)

    def forget_waiters(self, digest: str) -> None:
        """The fill of ``digest`` has ended: nobody waits for it to join the swarm any more."""
        future = self._ready.pop(digest, None)
        if future is not None and not future.done():
            future.cancel()

    # -- fetching ------------------------------------------------------------------------------
    async def fetch(
        self,
        fill: Fill,
        want: Want,
        torrent: Torrent,
        hasher: Hasher,
        home: asyncio.Task[tuple[str, int] | None] | None,
    ) -> bool:
        """Fetch the blob into ``fill`` (its file becomes ``swarm/<hex>``), hashing the
        verified prefix into ``hasher``. True when every byte came; False when the swarm
        stalled: the fill holds the verified prefix and the torrent is gone."""
        fill.retarget(self.folder / want.hexdigest)
        fill.begin(Head(torrent.size))
        download = self.swarm.start(torrent.data, self.folder)
        self._active[want.digest] = torrent.data
        ready = self._ready.pop(want.digest, None)
        if ready is not None and not ready.done():
            ready.set_result(torrent.data)
        puller = home is None
        try:
            hashed = await self._follow(fill, want, torrent, hasher, download, home, puller)
        except BaseException:
            await self._drop(download)
            raise
        finally:
            self._active.pop(want.digest, None)
            if home is not None and not home.done():
                home.cancel()
        complete = hashed == torrent.size
        await self._count(download, complete)
        if complete:
            self.swarm.release(download)  # seeding goes on
        else:
            await self._drop(download)
        return complete

    async def _follow(
        self,
        fill: Fill,
        want: Want,
        torrent: Torrent,
        hasher: Hasher,
        download: Download,
        home: asyncio.Task[tuple[str, int] | None] | None,
        puller: bool,
    ) -> int:
        """Hand verified pieces to the fill as they form a prefix; returns the bytes handed
        (the whole blob, or less when the swarm stalled)."""
        progressed = asyncio.Event()
        download.on_piece = progressed.set
        sources = _Sources(self, download, want, torrent, home)
        sources.start(puller)
        hashed = taken = 0  # bytes and pieces handed to the fill
        fd = os.open(self.folder / want.hexdigest, os.O_RDONLY)
        try:
            while True:
                if fill.waiters:
                    download.hurry(HURRY_PIECES)
                if not download.finished.done():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(TICK):
                            await progressed.wait()
                if progressed.is_set():
                    download.observe()
                progressed.clear()
                while download.prefix > taken:  # more pieces may come while it hashes
                    ready = await asyncio.to_thread(_take, fd, hasher, download, taken)
                    if ready == taken:  # passed its check, not in the file yet: soon
                        await asyncio.sleep(0.01)
                        break
                    taken = ready
                    hashed = download.span(taken - 1)[1]
                    await fill.advance(hashed)
                if hashed == torrent.size:
                    return hashed
                if download.finished.done() and download.finished.exception() is not None:
                    _log.warning(
                        "swarm fill failed",
                        digest=want.digest,
                        why=str(download.finished.exception()),
                        verified=hashed,
                    )
                    return hashed
                if sources.stalled():
                    _log.warning("swarm stalled", digest=want.digest, verified=hashed)
                    return hashed
        finally:
            os.close(fd)

    def peers(self, homes: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        return [*homes, *self.neighbours()]

    def add_web_seed(self, download: Download, want: Want, torrent: Torrent) -> None:
        url = f"{want.origin.base_url}/v2/{want.name}/blobs/{want.digest}"
        if torrent.seed_token is not None:
            url += f"?{SEED_PARAM}={torrent.seed_token}"
        download.add_web_seed(url)
        self.metrics.web_seeds.inc()

    async def _count(self, download: Download, complete: bool) -> None:
        peers, web = download.sources()
        self.metrics.received.labels("web_seed").inc(web)
        self.metrics.received.labels("peers").inc(peers)
        self.metrics.fills.labels("complete" if complete else "fallback").inc()

    async def _drop(self, download: Download) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.shield(self.swarm.remove(download.key))

    def adopt(self, digest: str, torrent: Torrent) -> None:
        """A blob this edge fetched through the swarm is committed: it is seeded from here on
        (from ``swarm/<hex>``, a link to the committed file) and after a restart."""
        self.seeder.adopt(digest, torrent.data)

    def unlink(self, hexdigest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / hexdigest).unlink()


class _Sources:
    """Where one download's pieces come from, and when to widen that: the home edge once
    it answers, gossip's edges again every few seconds, the origin as web seed at once for
    the one edge that pulls from it, after a stall for the others."""

    def __init__(
        self,
        owner: EdgeSwarm,
        download: Download,
        want: Want,
        torrent: Torrent,
        home: asyncio.Task[tuple[str, int] | None] | None,
    ) -> None:
        self.owner = owner
        self.download = download
        self.want = want
        self.torrent = torrent
        self.home = home
        self.homes: list[tuple[str, int]] = []
        self.web_seeded = False
        self.reconnected = time.monotonic()

    def start(self, puller: bool) -> None:
        if puller:
            self.web_seed()
        self.download.connect(self.owner.peers(self.homes))

    def web_seed(self) -> None:
        if not self.web_seeded:
            self.owner.add_web_seed(self.download, self.want, self.torrent)
            self.web_seeded = True

    def stalled(self) -> bool:
        """Widen the sources as needed; True once even the web seed brought nothing new
        for ``swarm_stall_seconds``."""
        now = time.monotonic()
        if self.home is not None and self.home.done() and not self.homes:
            found = self.home.result()
            self.home = None
            if found is None:
                self.web_seed()  # nobody else will ask the origin
            else:
                self.homes = [found]
                self.download.connect(self.homes)
        if now - self.reconnected >= RECONNECT:
            self.download.connect(self.owner.peers(self.homes))
            self.reconnected = now
        if now - self.download.progressed < self.owner.config.swarm_stall_seconds:
            return False
        if self.web_seeded:
            return True
        self.web_seed()
        self.download.progressed = now
        return False


def _take(fd: int, hasher: Hasher, download: Download, first: int) -> int:
    """Hash the pieces from ``first`` up to the prefix into the blob's digest, each read from
    the file and checked against its SHA-1 first (libtorrent may report a piece before its
    last block reached the file); the index of the first piece not taken."""
    piece = first
    while piece < download.prefix:
        start, end = download.span(piece)
        data = os.pread(fd, end - start, start)
        if hashlib.sha1(data, usedforsecurity=False).digest() != download.hashes[piece]:
            break
        hasher.update(data)
        piece += 1
    return piece
