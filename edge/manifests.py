"""Manifests at the edge: by digest immutable and cached; by tag cached for ``tag_ttl_seconds``
and then revalidated with a HEAD; served stale (with a ``Warning``) up to
``max_stale_seconds`` while the upstream is unreachable.

Manifests are small: they live in the edge's diskcache index itself, by digest, and are
checked against their digest before they are kept.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from edge.config import EdgeConfig
from edge.metrics import EdgeMetrics
from edge.store import BlobStore
from edge.upstream import Route, Unreachable
from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.manifest import MANIFEST_TYPES
from ocicore.singleflight import SingleFlight

MAX_MANIFEST_BYTES = 4 << 20
ACCEPT = ", ".join(sorted(MANIFEST_TYPES)) + ", */*;q=0.5"
STALE = '110 - "Response is Stale"'


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes


@dataclass(frozen=True)
class ManifestAsk:
    route: Route
    reference: str
    auth: str | None
    accept: str

    @property
    def by_digest(self) -> bool:
        return ":" in self.reference

    @property
    def path(self) -> str:
        return f"/v2/{self.route.name}/manifests/{self.reference}"

    @property
    def scope(self) -> str:
        return f"repository:{self.route.name}:pull"

    @property
    def where(self) -> str:
        return f"{self.route.upstream.label}:{self.route.name}"


class EdgeManifests:
    def __init__(self, store: BlobStore, config: EdgeConfig, metrics: EdgeMetrics) -> None:
        self.index = store.index
        self.store = store
        self.config = config
        self.metrics = metrics
        # Clients arriving together (a tag's TTL running out under load) share one upstream
        # round trip; each was authorized on its own first.
        self._flights: SingleFlight[tuple[Manifest, bool]] = SingleFlight()
        self.on_manifest: list[Callable[[bytes], None]] = []  # e.g. note the layers' sizes
        # Tags pushed here that the origin does not have yet: served as pushed, never
        # revalidated (the origin would say they do not exist) until replicated.
        self.pushed_tags: Counter[tuple[str, str]] = Counter()  # pushes of it on their way

    def cached(self, digest: str) -> Manifest | None:
        found = self.index.get(f"manifest:{digest}")
        if isinstance(found, tuple) and len(found) == 2:
            return Manifest(digest, str(found[0]), bytes(found[1]))
        return None

    def _keep(self, manifest: Manifest) -> None:
        self.index.set(f"manifest:{manifest.digest}", (manifest.media_type, manifest.body))
        for listener in self.on_manifest:
            listener(manifest.body)

    def has(self, digest: str) -> bool:
        return self.cached(digest) is not None

    def tag_digest(self, where: str, tag: str) -> str | None:
        found = self.index.get(f"tag:{where}:{tag}")
        return str(found[0]) if isinstance(found, tuple) else None

    def keep_pushed(
        self, where: str, digest: str, media_type: str, body: bytes, tag: str | None
    ) -> None:
        """A manifest pushed here: served at once, its tag pinned until replicated."""
        self._keep(Manifest(digest, media_type, body))
        if tag is not None:
            self.index.set(f"tag:{where}:{tag}", (digest, time.time()))
            self.pushed_tags[(where, tag)] += 1

    async def prefetch(self, ask: ManifestAsk) -> Manifest:
        """The manifest ``ask`` names by digest, from the cache or the upstream (kept)."""
        key = (ask.where, ask.reference, ask.accept)
        manifest, _ = await self._flights.run(key, lambda: self._by_digest(ask))
        return manifest

    def set_tag(self, where: str, tag: str, digest: str) -> None:
        """The upstream moved ``tag`` to ``digest`` (its event feed said so)."""
        if (where, tag) not in self.pushed_tags:  # a push here, on its way, comes first
            self.index.set(f"tag:{where}:{tag}", (digest, time.time()))

    def forget_tag(self, where: str, tag: str) -> None:
        if (where, tag) not in self.pushed_tags:
            self.index.delete(f"tag:{where}:{tag}")

    def forget_manifest(self, where: str, digest: str) -> None:
        """The upstream deleted it from that repository: not served through it any more."""
        self.store.forget(where, digest)

    def replicated(self, where: str, tag: str | None, kept: bool) -> None:
        """The origin has the push now; ``kept``: its tag too (else the origin's tag wins,
        asked for at the next pull)."""
        if tag is None:
            return
        self.pushed_tags[(where, tag)] -= 1
        if self.pushed_tags[(where, tag)] > 0:
            return  # a later push of the tag is on its way: the edge keeps serving that one
        del self.pushed_tags[(where, tag)]
        if not kept:
            self.index.delete(f"tag:{where}:{tag}")

    def _tag(self, ask: ManifestAsk) -> tuple[str, float] | None:
        found = self.index.get(f"tag:{ask.where}:{ask.reference}")
        return (str(found[0]), float(found[1])) if isinstance(found, tuple) else None

    def _set_tag(self, ask: ManifestAsk, digest: str) -> None:
        self.index.set(f"tag:{ask.where}:{ask.reference}", (digest, time.time()))

    def _fresh(self, ask: ManifestAsk) -> Manifest | None:
        """The cached manifest, when it may be served without asking the upstream."""
        if ask.by_digest:
            held = self.store.held(ask.where, ask.reference)
            if held is None or time.time() - held >= self.config.held_ttl_seconds:
                return None
            return self.cached(ask.reference)
        tag = self._tag(ask)
        if tag is None:
            return None
        if (ask.where, ask.reference) not in self.pushed_tags and (
            time.time() - tag[1] >= self.config.tag_ttl_seconds
        ):
            return None
        return self.cached(tag[0])

    async def serve(self, request: web.Request, ask: ManifestAsk) -> web.Response:
        fresh = self._fresh(ask)
        if fresh is not None:
            self.metrics.hits.labels("manifest").inc()
            manifest, stale = fresh, False
        else:
            key = (ask.where, ask.reference, ask.accept)
            manifest, stale = await self._flights.run(
                key, lambda: self._by_digest(ask) if ask.by_digest else self._by_tag(ask)
            )
        headers = {
            "Docker-Content-Digest": manifest.digest,
            "Content-Type": manifest.media_type,
            "Content-Length": str(len(manifest.body)),
        }
        if stale:
            headers["Warning"] = STALE
            self.metrics.stale.inc()
        if request.method == "HEAD":
            return web.Response(headers=headers)
        return web.Response(body=manifest.body, headers=headers)

    async def _by_digest(self, ask: ManifestAsk) -> tuple[Manifest, bool]:
        Digest.parse(ask.reference)
        cached = self.cached(ask.reference)
        self.metrics.misses.labels("manifest").inc()
        try:
            if cached is not None:
                status, _ = await self._head(ask)
                if status == 200:
                    self.store.hold(ask.where, ask.reference)
                    return cached, False
                raise _refused(status, ask)
            manifest = await self._fetch(ask)
        except Unreachable:
            if cached is not None and self.store.held(ask.where, ask.reference) is not None:
                return cached, True
            raise OCIError(ErrorCode.UNAVAILABLE, "the upstream is unreachable") from None
        self.store.hold(ask.where, manifest.digest)
        return manifest, False

    async def _by_tag(self, ask: ManifestAsk) -> tuple[Manifest, bool]:
        tag = self._tag(ask)
        cached = self.cached(tag[0]) if tag is not None else None
        age = time.time() - tag[1] if tag is not None else float("inf")
        self.metrics.misses.labels("manifest").inc()
        try:
            status, digest = await self._head(ask)
            if status != 200:
                if status == 404:
                    self.index.delete(f"tag:{ask.where}:{ask.reference}")
                raise _refused(status, ask)
            known = self.cached(digest) if digest else None
            manifest = known if known is not None else await self._fetch(ask)
        except Unreachable:
            if cached is not None and age < self.config.max_stale_seconds:
                return cached, True
            raise OCIError(ErrorCode.UNAVAILABLE, "the upstream is unreachable") from None
        self._set_tag(ask, manifest.digest)
        self.store.hold(ask.where, manifest.digest)
        return manifest, False

    async def _head(self, ask: ManifestAsk) -> tuple[int, str | None]:
        started = time.perf_counter()
        async with ask.route.upstream.request(
            "HEAD", ask.path, ask.auth, {"Accept": ask.accept}, scope=ask.scope
        ) as r:
            self._observe(started)
            return r.status, r.headers.get("Docker-Content-Digest")

    async def _fetch(self, ask: ManifestAsk) -> Manifest:
        started = time.perf_counter()
        async with ask.route.upstream.request(
            "GET", ask.path, ask.auth, {"Accept": ask.accept}, scope=ask.scope
        ) as r:
            self._observe(started)
            if r.status != 200:
                raise _refused(r.status, ask)
            body = await r.content.read(MAX_MANIFEST_BYTES + 1)
            if len(body) > MAX_MANIFEST_BYTES:
                raise OCIError(ErrorCode.MANIFEST_INVALID, "the upstream's manifest is too large")
            media_type = r.content_type or "application/octet-stream"
            claimed = r.headers.get("Docker-Content-Digest")
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = ask.reference if ask.by_digest else claimed
        if expected is not None and expected != actual:
            if not expected.startswith("sha512:") or (
                "sha512:" + hashlib.sha512(body).hexdigest() != expected
            ):
                raise OCIError(
                    ErrorCode.UNAVAILABLE, "the upstream sent a manifest of another digest"
                )
            actual = expected
        manifest = Manifest(actual, media_type, body)
        self._keep(manifest)
        return manifest

    def _observe(self, started: float) -> None:
        self.metrics.upstream_latency.labels("upstream", "manifest").observe(
            time.perf_counter() - started
        )


def _refused(status: int, ask: ManifestAsk) -> OCIError:
    if status == 404:
        return OCIError(ErrorCode.MANIFEST_UNKNOWN, ask.reference)
    if status == 401:
        return OCIError(ErrorCode.UNAUTHORIZED, "the upstream wants credentials")
    if status == 403:
        return OCIError(ErrorCode.DENIED, "the upstream refused this repository")
    return OCIError(ErrorCode.UNAVAILABLE, f"the upstream answered {status}")
