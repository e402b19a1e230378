"""Blobs at the edge: hits from disk by sendfile, misses filled once from the upstream.

A hit is served only once the upstream has said the repository asked for holds the digest
(remembered for ``held_ttl_seconds``; kept when the upstream is unreachable), so a blob cached
for one repository never leaks through another. A miss joins the digest's fill, or starts it
with the client's token: headers go out as soon as the upstream answers, bytes as they
arrive; if the fill fails the client's transfer is cut, never completed short.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from cachetools import LRUCache, TTLCache

from edge.config import EdgeConfig
from edge.metrics import EdgeMetrics
from edge.store import BlobStore
from edge.swarm import HOP, EdgeSwarm, Want
from edge.upstream import Route, Unreachable, Upstream
from ocicore.cas import hash_file
from ocicore.digest import Digest, Hasher
from ocicore.errors import ErrorCode, OCIError
from ocicore.fills import Busy, Fill, FillFailed, Fills, Head
from ocicore.web.sendfile import BlobFileResponse, SendfilePool

BATCH = 1 << 20
_RANGE = re.compile(r"^bytes=(\d{1,19})-(\d{0,19})$")
_CONTENT_RANGE = re.compile(r"^bytes (\d{1,19})-(\d{1,19})/(\d{1,19})$")


@dataclass(frozen=True)
class Ask:
    """One client's request for a blob."""

    route: Route
    repository: str  # as the client named it
    digest: Digest
    auth: str | None
    hop: bool = False  # asked by a peer edge: never ask peers in turn

    @property
    def scope(self) -> str:
        return f"repository:{self.route.name}:pull"

    @property
    def path(self) -> str:
        return f"/v2/{self.route.name}/blobs/{self.digest}"


class EdgeBlobs:
    def __init__(
        self,
        store: BlobStore,
        fills: Fills,
        config: EdgeConfig,
        metrics: EdgeMetrics,
        sendfile: SendfilePool,
        home_of: Callable[[Ask], Upstream | None] = lambda ask: None,
    ) -> None:
        self.home_of = home_of
        self.on_commit: list[Callable[[Digest], Awaitable[None]]] = []  # e.g. start seeding
        self.store = store
        self.fills = fills
        self.config = config
        self.metrics = metrics
        self.sendfile = sendfile
        self._absent: TTLCache[tuple[str, str], bool] = TTLCache(
            maxsize=100_000, ttl=config.not_found_ttl_seconds
        )
        self._fill_repository: dict[str, str] = {}
        self.swarm: EdgeSwarm | None = None  # set when the swarm starts
        # Sizes of layers named by manifests that passed through: whether a blob is large
        # enough for the swarm is known without asking the upstream.
        self._sizes: LRUCache[str, int] = LRUCache(100_000)

    def learn_sizes(self, manifest: bytes) -> None:
        """Note the sizes of the blobs a manifest names (a hint: the metainfo decides)."""
        try:
            body = json.loads(manifest)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        layers = body.get("layers")
        for descriptor in [*(layers if isinstance(layers, list) else []), body.get("config")]:
            if isinstance(descriptor, dict):
                digest, size = descriptor.get("digest"), descriptor.get("size")
                if isinstance(digest, str) and isinstance(size, int) and size >= 0:
                    self._sizes[digest] = size

    # -- which repository holds what -----------------------------------------------------------
    async def confirm(self, ask: Ask) -> None:
        """Raise BLOB_UNKNOWN unless the upstream says the repository holds the digest."""
        key = f"{ask.route.upstream.label}:{ask.route.name}"
        confirmed = self.store.held(key, str(ask.digest))
        if confirmed is not None and time.time() - confirmed < self.config.held_ttl_seconds:
            return
        try:
            async with ask.route.upstream.request("HEAD", ask.path, ask.auth, scope=ask.scope) as r:
                status = r.status
        except Unreachable:
            if confirmed is not None:
                return  # confirmed before; the upstream cannot say otherwise now
            raise OCIError(ErrorCode.UNAVAILABLE, "the upstream is unreachable") from None
        if status == 200:
            self.store.hold(key, str(ask.digest))
            return
        self.store.forget(key, str(ask.digest))
        if status in (401, 403):
            raise OCIError(ErrorCode.DENIED, "the upstream refused this repository")
        raise OCIError(ErrorCode.BLOB_UNKNOWN, str(ask.digest))

    # -- serving -------------------------------------------------------------------------------
    async def serve(self, request: web.Request, ask: Ask) -> web.StreamResponse:
        headers = {
            "Docker-Content-Digest": str(ask.digest),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        size = self.store.size(ask.digest)
        if size is not None:
            path = self.store.acquire(ask.digest)  # no eviction from here until it is sent
            try:
                await self.confirm(ask)
            except BaseException:
                self.store.release(ask.digest)
                raise
            self.metrics.hits.labels("blob").inc()
            if request.method == "HEAD":
                self.store.release(ask.digest)
                return web.Response(headers={**headers, "Content-Length": str(size)})
            self.metrics.served.labels("cache").inc(size)
            return _HeldFile(path, self.store, ask.digest, self.sendfile, headers=headers)
        self.metrics.misses.labels("blob").inc()
        if (ask.route.name, str(ask.digest)) in self._absent:
            raise OCIError(ErrorCode.BLOB_UNKNOWN, str(ask.digest))
        if request.method == "HEAD":
            return await self._head_upstream(ask, headers)
        fill = self._join(ask)
        if self._fill_repository.get(fill.key) != f"{ask.route.upstream.label}:{ask.route.name}":
            await self.confirm(ask)  # joined a fill started through another repository
        try:
            async with asyncio.timeout(self.config.header_timeout_seconds):
                head = await fill.head()
        except TimeoutError:
            raise OCIError(ErrorCode.UNAVAILABLE, "the upstream did not answer in time") from None
        except FillFailed as exc:
            raise _error(exc, ask) from None
        return await self._stream(request, fill, head, headers)

    async def prefetch(self, ask: Ask) -> None:
        """Bring the blob into the cache (the upstream said ``ask``'s repository holds it)."""
        if self.store.size(ask.digest) is not None:
            self.store.hold(f"{ask.route.upstream.label}:{ask.route.name}", str(ask.digest))
            return
        while True:
            try:
                fill = self._join(ask)
                break
            except OCIError:  # too many fills at once: prefetching can wait
                await asyncio.sleep(1.0)
        await fill.wait()

    async def torrent(self, ask: Ask) -> bytes:
        """A peer asks this edge to join the swarm for a blob (its home edge, usually): the
        blob's metainfo once this edge seeds it or fetches it through the swarm."""
        swarm = self.swarm
        if swarm is None or ask.route.upstream.mirror is not None:
            raise OCIError(ErrorCode.BLOB_UNKNOWN, "this edge shares no blobs of this upstream")
        digest = str(ask.digest)
        if self.store.size(ask.digest) is not None:
            await self.confirm(ask)
            known = swarm.known(digest)
            if known is None:
                raise OCIError(ErrorCode.BLOB_UNKNOWN, "this edge does not seed it")
            return known
        fill = self._join(ask)
        if self._fill_repository.get(fill.key) != f"{ask.route.upstream.label}:{ask.route.name}":
            await self.confirm(ask)
        joined = asyncio.ensure_future(swarm.joined(digest))
        ended = asyncio.ensure_future(fill.wait())
        try:
            await asyncio.wait(
                {joined, ended},
                timeout=self.config.header_timeout_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in (joined, ended):
                task.cancel()
            await asyncio.wait({joined, ended})
        if joined.cancelled() or joined.exception() is not None:
            if not ended.cancelled() and isinstance(ended.exception(), FillFailed):
                raise _error(ended.exception(), ask)  # type: ignore[arg-type]
            raise OCIError(ErrorCode.BLOB_UNKNOWN, "this edge does not fetch it through the swarm")
        return joined.result()

    def _join(self, ask: Ask) -> Fill:
        key = str(ask.digest)
        found = self.fills.get(key)
        if found is not None:
            self.metrics.coalesced.inc()
            return found
        upload_id = str(uuid.uuid4())
        try:
            fill = self.fills.start(
                key,
                self.store.temp_path(upload_id),
                lambda fill: self._produce(fill, ask, upload_id),
            )
        except Busy:
            raise OCIError(
                ErrorCode.UNAVAILABLE,
                "too many blobs are being fetched; try again shortly",
                headers={"Retry-After": "2"},
            ) from None
        self._fill_repository[key] = f"{ask.route.upstream.label}:{ask.route.name}"
        return fill

    async def _produce(self, fill: Fill, ask: Ask, upload_id: str) -> None:
        """Large blobs from the origin come through the swarm. Others come from the digest's
        home edge in this region when that is another edge, and from the upstream otherwise,
        or when the home edge fails or sends wrong bytes. A peer's bytes are held from clients
        until verified, so a bad peer costs them only latency."""
        self.metrics.fills_in_flight.inc()
        try:
            swarm = self.swarm if ask.route.upstream.mirror is None else None
            if swarm is not None and swarm.wants(await self._size(ask)):
                await self._through_swarm(fill, ask, upload_id, swarm)
                return
            home = None if ask.hop else self.home_of(ask)
            if home is not None:
                fill.hold()
                try:
                    await self._fetch(fill, ask, upload_id, home, "peer")
                except FillFailed as exc:
                    self.metrics.fill_failures.labels(f"peer_{_reason(exc)}").inc()
                    await fill.reset()
                    await fill.release()
                else:
                    await fill.release()
                    return
            await self._fetch(fill, ask, upload_id, ask.route.upstream, "upstream")
        finally:
            self.metrics.fills_in_flight.dec()
            self._fill_repository.pop(str(ask.digest), None)
            if self.swarm is not None:  # peers waiting for it to join the swarm: it won't now
                self.swarm.forget_waiters(str(ask.digest))

    async def _size(self, ask: Ask) -> int | None:
        """The blob's size: from a manifest seen, or the upstream's HEAD (None: unknown)."""
        known = self._sizes.get(str(ask.digest))
        if known is not None:
            return known
        try:
            async with ask.route.upstream.request("HEAD", ask.path, ask.auth, scope=ask.scope) as r:
                status, length = r.status, r.headers.get("Content-Length", "")
        except Unreachable:
            return None  # the plain fill says what is wrong
        if status == 404:
            self._absent[(ask.route.name, str(ask.digest))] = True
            self.metrics.fill_failures.labels("not_found").inc()
            raise FillFailed("blob unknown", 404)
        if status in (401, 403):
            self.metrics.fill_failures.labels("refused").inc()
            raise FillFailed("the upstream refused", status)
        return int(length) if status == 200 and length.isdigit() else None

    async def _through_swarm(self, fill: Fill, ask: Ask, upload_id: str, swarm: EdgeSwarm) -> None:
        """Fetch through the swarm; if it stalls, the rest over HTTP from the origin."""
        want = Want(
            ask.route.upstream, ask.route.name, str(ask.digest), ask.digest.encoded, ask.auth
        )
        try:
            torrent = await swarm.metainfo(want)
        except Unreachable as exc:
            self.metrics.fill_failures.labels("unreachable").inc()
            raise FillFailed(str(exc), 502) from None
        except FillFailed as exc:
            if exc.status in (401, 403, 404):
                raise
            await self._fetch(fill, ask, upload_id, ask.route.upstream, "upstream")
            return
        home_edge = None if ask.hop else self.home_of(ask)
        home = asyncio.create_task(swarm.poke(home_edge, want)) if home_edge else None
        hasher = ask.digest.hasher()
        if await swarm.fetch(fill, want, torrent, hasher, home):
            swarm.adopt(want.digest, torrent)  # seeded already: on_commit finds it so
            try:
                await self._commit(fill, ask, upload_id, hasher.hexdigest(), "swarm")
            except BaseException:
                for listener in self.store.evict_listeners:
                    listener(want.digest)  # forget the torrent
                raise
            return
        swarm.seeder.save(want.digest, torrent.data)  # seeded once committed, without hashing
        await self._fetch(fill, ask, upload_id, ask.route.upstream, "upstream", hasher)
        swarm.unlink(want.hexdigest)

    async def _fetch(
        self,
        fill: Fill,
        ask: Ask,
        upload_id: str,
        source: Upstream,
        kind: str,
        hasher: Hasher | None = None,
    ) -> None:
        """Stream the blob from ``source`` into the fill, verify it and commit it. With
        ``hasher``, the fill holds a verified prefix already (hashed into it): only the rest
        is asked for, and the whole file is hashed again before the commit."""
        started = time.perf_counter()
        path = ask.path if kind == "upstream" else f"/v2/{ask.repository}/blobs/{ask.digest}"
        headers = {HOP: "1"} if kind == "peer" else {}
        offset = fill.written if hasher is not None else 0
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            async with source.request("GET", path, ask.auth, headers, scope=ask.scope) as r:
                self.metrics.upstream_latency.labels(source.label, "blob").observe(
                    time.perf_counter() - started
                )
                if r.status == 404:
                    if kind == "upstream":
                        self._absent[(ask.route.name, str(ask.digest))] = True
                    raise FillFailed("blob unknown", 404)
                if r.status in (401, 403):
                    raise FillFailed("the upstream refused", r.status)
                size = _size_of(r.status, r.content_length, r.headers.get("Content-Range"), offset)
                if size is None:
                    raise FillFailed(f"the {kind} answered {r.status}", 502)
                fill.begin(Head(size))
                if (await fill.head()).size != size:
                    raise FillFailed(f"the {kind} announced another size", 502)
                recheck = hasher is not None
                hasher = hasher or ask.digest.hasher()
                pending: list[bytes] = []
                pending_size = 0
                async for chunk in r.content.iter_any():
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= BATCH:
                        await _append(fill, b"".join(pending), hasher)
                        pending, pending_size = [], 0
                if pending:
                    await _append(fill, b"".join(pending), hasher)
            if fill.written != size:
                raise FillFailed(f"the {kind} sent a short body", 502)
            await self._commit(fill, ask, upload_id, hasher.hexdigest(), kind, recheck)
        except Unreachable as exc:
            self.metrics.fill_failures.labels("unreachable").inc()
            raise FillFailed(str(exc), 502) from None
        except FillFailed as exc:
            self.metrics.fill_failures.labels(_reason(exc)).inc()
            raise
        except (ConnectionError, OSError) as exc:
            self.metrics.fill_failures.labels("interrupted").inc()
            raise FillFailed(f"the {kind} broke off: {type(exc).__name__}", 502) from None

    async def _commit(
        self,
        fill: Fill,
        ask: Ask,
        upload_id: str,
        hexdigest: str,
        kind: str,
        recheck: bool = False,
    ) -> None:
        """Check the digest, let clients finish, then sync, store and announce the blob
        (``recheck``: hash the file on disk again, for one that had two writers)."""
        if hexdigest != ask.digest.encoded:
            raise FillFailed(f"the {kind} sent bytes of another digest", 502)
        if recheck:  # before anyone gets the last byte: the file is what is kept and served
            await fill.sync()
            if await asyncio.to_thread(hash_file, fill.path, ask.digest) != ask.digest.encoded:
                raise FillFailed(f"the file the {kind} filled does not match its digest", 502)
        self.metrics.filled.labels(kind).inc(fill.written)  # counted once verified
        if kind != "peer":  # a peer's bytes wait for their release after this returns
            await fill.verified()  # verified: clients finish now, the cache syncs after
        await fill.sync()
        upload = self.store.temp_path(upload_id)
        if fill.path != upload:  # the swarm's file: the store commits a second name of it
            await asyncio.to_thread(os.link, fill.path, upload)
        try:
            await self.store.admit(upload_id, ask.digest, hexdigest)
        except BaseException:
            await asyncio.to_thread(self.store.files.discard_upload, upload_id)
            raise
        self.store.hold(f"{ask.route.upstream.label}:{ask.route.name}", str(ask.digest))
        for listener in self.on_commit:
            await listener(ask.digest)

    async def _head_upstream(self, ask: Ask, headers: dict[str, str]) -> web.Response:
        try:
            async with ask.route.upstream.request("HEAD", ask.path, ask.auth, scope=ask.scope) as r:
                status, length = r.status, r.headers.get("Content-Length", "0")
        except Unreachable:
            raise OCIError(ErrorCode.UNAVAILABLE, "the upstream is unreachable") from None
        if status == 200:
            return web.Response(headers={**headers, "Content-Length": length})
        if status == 404:
            self._absent[(ask.route.name, str(ask.digest))] = True
        raise _error(FillFailed("upstream", status), ask)

    async def _stream(
        self, request: web.Request, fill: Fill, head: Head, headers: dict[str, str]
    ) -> web.StreamResponse:
        start, end = _range(request.headers.get("Range"), head.size)
        response = web.StreamResponse(status=206 if (start, end) != (0, head.size) else 200)
        response.headers.update(headers)
        response.content_length = end - start
        if response.status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{head.size}"
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in fill.tail(start, end):
                await response.write(chunk)
                sent += len(chunk)
        except FillFailed:
            # Cut the transfer: a client must see a broken download, never a short "whole" one.
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the fill failed") from None
        finally:
            self.metrics.served.labels("upstream").inc(sent)
        await response.write_eof()
        return response


def _size_of(status: int, length: int | None, content_range: str | None, offset: int) -> int | None:
    """The whole blob's size from a 200 (asked from 0) or a 206 from ``offset`` to the end."""
    if offset == 0:
        return length if status == 200 else None
    match = _CONTENT_RANGE.match(content_range or "")
    if status != 206 or length is None or match is None or int(match[1]) != offset:
        return None
    size = int(match[3])
    return size if int(match[2]) == size - 1 and length == size - offset else None


async def _append(fill: Fill, data: bytes, hasher: Hasher) -> None:
    await asyncio.to_thread(hasher.update, data)
    await fill.append(data)


def _range(header: str | None, size: int) -> tuple[int, int]:
    if header is None:
        return 0, size
    match = _RANGE.match(header.strip())
    if match is None:
        return 0, size  # several ranges, or nonsense: the whole blob, as RFC 9110 allows
    start = int(match[1])
    end = int(match[2]) + 1 if match[2] else size
    if start >= size or end <= start:
        raise OCIError(
            ErrorCode.RANGE_INVALID, header[:60], headers={"Content-Range": f"bytes */{size}"}
        )
    return start, min(end, size)


class _HeldFile(BlobFileResponse):
    """A cached blob's file response, its blob kept from eviction until it is sent."""

    def __init__(
        self,
        path: Path,
        store: BlobStore,
        digest: Digest,
        pool: SendfilePool,
        headers: dict[str, str],
    ) -> None:
        """``path`` comes from ``store.acquire(digest)``: this response releases it."""
        super().__init__(path, pool, headers=headers)
        self._store, self._digest = store, digest
        self._held = True

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            return await super().prepare(request)
        finally:
            self._let_go()

    def _let_go(self) -> None:
        if self._held:
            self._held = False
            self._store.release(self._digest)

    def __del__(self) -> None:  # never prepared (the client left first): let go all the same
        self._let_go()


def _reason(exc: FillFailed) -> str:
    if exc.status == 404:
        return "not_found"
    if exc.status in (401, 403):
        return "refused"
    if "digest" in exc.reason:
        return "digest_mismatch"
    if "short" in exc.reason:
        return "short_body"
    return "upstream_error"


def _error(exc: FillFailed, ask: Ask) -> OCIError:
    if exc.status == 404:
        return OCIError(ErrorCode.BLOB_UNKNOWN, str(ask.digest))
    if exc.status in (401, 403):
        return OCIError(ErrorCode.DENIED, "the upstream refused this repository")
    return OCIError(ErrorCode.UNAVAILABLE, exc.reason, status=502 if exc.status == 502 else 503)
