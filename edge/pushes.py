"""Pushes at the edge: blobs and manifests verified, stored, pinned and journaled, then
acknowledged; the replicator (``edge.replication``) carries them to the origin.

Blobs come through the same upload protocol as at the origin (``ocicore.web.pushes``); a
committed blob is pinned (never evicted while the origin lacks it), recorded in the journal
and indexed. A manifest is validated, its blobs and child manifests must be at this edge or
at the origin, and it is journaled before it is acknowledged; pulls at this edge see it at
once, its tag served as pushed (not revalidated) until the origin has it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web

from edge.config import EdgeConfig
from edge.journal import Journal
from edge.manifests import MAX_MANIFEST_BYTES, EdgeManifests
from edge.store import BlobStore
from edge.upstream import Route, Unreachable, Upstreams
from ocicore.auth.enforce import GRANT
from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.manifest import Manifest, parse_pushed, parse_reference
from ocicore.names import validate_name
from ocicore.web.pushes import read_manifest

ORIGIN = "origin"  # the label of the origin's upstream: where pushed content is held
ASK_ORIGIN = aiohttp.ClientTimeout(total=2.0)  # a push waits this long at most for the origin


class EdgePushes:
    def __init__(
        self,
        store: BlobStore,
        journal: Journal,
        manifests: EdgeManifests,
        upstreams: Upstreams,
        config: EdgeConfig,
        journaled: Callable[[], None],
    ) -> None:
        self.store = store
        self.journal = journal
        self.manifests = manifests
        self.upstreams = upstreams
        self.config = config
        self.journaled = journaled  # wakes the replicator

    # -- blobs (ocicore.uploads.Link and BlobPushes.mount) ------------------------------------
    async def link(
        self, name: str, digest: str, size: int, finished_upload: str | None = None
    ) -> None:
        """A blob pushed here: pinned, journaled, indexed, and held for ``name``."""
        parsed = Digest.parse(digest)
        self.store.pin(parsed)
        await self.journal.blob_pushed(name, digest, size, finished_upload)
        await self.store.adopt(parsed, size)
        self.store.hold(f"{ORIGIN}:{name}", digest)

    async def mount(self, name: str, digest: Digest, source: str) -> bool:
        """A blob this edge holds for ``source`` (the caller may pull it) joins ``name``."""
        size = self.store.size(digest)
        if size is None or self.store.held(f"{ORIGIN}:{source}", str(digest)) is None:
            return False
        await self.link(name, str(digest), size)
        return True

    # -- manifests ----------------------------------------------------------------------------
    async def put_manifest(self, request: web.Request) -> web.Response:
        route = self._route(request)
        name = route.name
        reference = parse_reference(request.match_info["reference"])
        payload = await read_manifest(request, MAX_MANIFEST_BYTES)
        manifest, tag = parse_pushed(reference, payload, request.headers.get("Content-Type"))
        auth = request.headers.get("Authorization")
        _, base = await asyncio.gather(  # side by side: each may ask the origin
            self._check_references(route, manifest, auth),
            self._base(route, tag, auth) if tag is not None else _nothing(),
        )
        grant = request.get(GRANT)
        digest = str(manifest.digest)
        local = [d.digest for d in manifest.blobs if self._here(route, d.digest)]
        for blob in local:  # the origin may lack them: they stay until it has them
            self.store.pin(blob)
        await self.journal.manifest_pushed(
            name,
            digest,
            manifest.media_type,
            payload,
            tag,
            base,
            [str(d) for d in local],
            grant.subject if grant is not None else "",
        )
        self.manifests.keep_pushed(f"{ORIGIN}:{name}", digest, manifest.media_type, payload, tag)
        self.store.hold(f"{ORIGIN}:{name}", digest)
        self.journaled()
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        if manifest.subject is not None:
            headers["OCI-Subject"] = str(manifest.subject.digest)
        return web.Response(status=201, headers=headers)

    def _route(self, request: web.Request) -> Route:
        route = self.upstreams.route(
            validate_name(request.match_info["name"]), request.query.get("ns")
        )
        if route.upstream.mirror is not None:
            raise OCIError(
                ErrorCode.UNSUPPORTED,
                f"{route.upstream.mirror.namespace} is mirrored here: push to the origin's "
                "repositories",
            )
        return route

    async def _check_references(self, route: Route, manifest: Manifest, auth: str | None) -> None:
        """Every blob and child manifest must be here or at the origin."""
        missing_blobs = [
            str(d.digest)
            for d in manifest.blobs
            if not self._here(route, d.digest)
            and not await self._at_origin(route, f"blobs/{d.digest}", auth)
        ]
        if missing_blobs:
            raise OCIError(ErrorCode.MANIFEST_BLOB_UNKNOWN, {"blobs": missing_blobs})
        missing = [
            str(d.digest)
            for d in manifest.children
            if not self.manifests.has(str(d.digest))
            and not await self._at_origin(route, f"manifests/{d.digest}", auth)
        ]
        if missing:
            raise OCIError(ErrorCode.MANIFEST_UNKNOWN, {"manifests": missing}, status=400)

    def _here(self, route: Route, digest: Digest) -> bool:
        """The edge holds the blob *for this repository* (pushed or mounted here, or the
        origin said the repository holds it): a blob cached for another repository is no
        proof, and carrying it up would hand it to this one."""
        return (
            self.store.size(digest) is not None
            and self.store.held(f"{ORIGIN}:{route.name}", str(digest)) is not None
        )

    async def _at_origin(self, route: Route, path: str, auth: str | None) -> bool:
        try:
            async with route.upstream.request(
                "HEAD", f"/v2/{route.name}/{path}", auth, deadlines=ASK_ORIGIN
            ) as r:
                return r.status == 200
        except Unreachable:
            return False

    async def _base(self, route: Route, tag: str, auth: str | None) -> str | None:
        """The digest ``tag`` has now as far as this edge can tell ("" for no such tag; None
        when nobody can say: the origin is unreachable and the tag is not cached)."""
        where = f"{ORIGIN}:{route.name}"
        if (where, tag) in self.manifests.pushed_tags:  # an earlier push here, still on its way
            return self.manifests.tag_digest(where, tag)
        try:
            async with route.upstream.request(
                "HEAD", f"/v2/{route.name}/manifests/{tag}", auth, deadlines=ASK_ORIGIN
            ) as r:
                if r.status == 404:
                    return ""
                if r.status == 200:
                    return r.headers.get("Docker-Content-Digest")
        except Unreachable:
            pass
        return self.manifests.tag_digest(where, tag)


async def _nothing() -> None:
    return None
