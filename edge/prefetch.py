"""Prefetch: the edge follows the origin's event feed for its region and fetches what the
replication rules give it, so content is here before its first pull.

The edge asks ``/api/v1/replication/events`` (as its replicator account, a long poll) for
what came after its cursor: a push brings the manifest (and, for an index, its children) and
every blob they name into the cache, large blobs through the swarm like any fill, and points
the tag at it; a tag moved or removed, or a manifest deleted, at the origin is moved or
forgotten here too; a blob whose bytes the origin's garbage collection deleted is evicted
(every region hears of deletions, whatever its rules). The cursor is saved after each page (``<data_dir>/feed-cursor``), so an
edge that was away catches up from where it stopped; replaying an event is harmless.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from edge.blobs import Ask, EdgeBlobs
from edge.config import EdgeConfig
from edge.manifests import ACCEPT, EdgeManifests, ManifestAsk
from edge.metrics import PrefetchMetrics
from edge.pushes import ORIGIN
from edge.tokens import Token, TokenRefused, ask_token
from edge.upstream import Route, Unreachable, Upstream
from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.fills import FillFailed
from ocicore.manifest import parse_manifest

_log = structlog.get_logger("wharf.edge.prefetch")
WAIT = 15.0  # seconds the origin holds a feed request open when nothing is new


class Prefetcher:
    def __init__(
        self,
        blobs: EdgeBlobs,
        manifests: EdgeManifests,
        origin: Upstream,
        session: aiohttp.ClientSession,
        config: EdgeConfig,
        metrics: PrefetchMetrics,
    ) -> None:
        self.blobs = blobs
        self.manifests = manifests
        self.origin = origin
        self.session = session
        self.config = config
        self.metrics = metrics
        self.cursor_file = config.data_dir / "feed-cursor"
        self._tokens: dict[str, Token] = {}

    async def run(self) -> None:
        cursor = await asyncio.to_thread(_load, self.cursor_file)
        pause = 0.5
        while True:
            try:
                page = await self._page(cursor)
                for event in page["events"]:
                    if await self._settle(event):
                        cursor = int(event["seq"])  # done or gone for good: past it
                    else:
                        raise Unreachable("an event could not be prefetched yet")
                cursor = int(page["cursor"])
                pause = 0.5
            except Exception as exc:  # the origin down, a bad answer: try again, later
                self.metrics.failures.inc()
                _log.warning("prefetch round failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
            finally:
                await asyncio.to_thread(_save, self.cursor_file, cursor)
                self.metrics.cursor.set(cursor)

    async def _settle(self, event: dict[str, Any]) -> bool:
        """Apply one event; False when it should be tried again (the origin unreachable),
        True when done or when what it names is gone for good (deleted since: skipped)."""
        try:
            await self._apply(event)
        except OCIError as exc:
            return exc.code in (ErrorCode.MANIFEST_UNKNOWN, ErrorCode.BLOB_UNKNOWN)
        except FillFailed as exc:
            return exc.status == 404
        return True

    async def _page(self, cursor: int) -> dict[str, Any]:
        params = {"region": self.config.region, "after": str(cursor), "wait": str(WAIT)}
        async with self.session.get(
            f"{self.origin.base_url}/api/v1/replication/events",
            params=params,
            headers={"Authorization": self._basic()},
            timeout=aiohttp.ClientTimeout(total=WAIT + 20),
        ) as r:
            if r.status != 200:
                raise Unreachable(f"the event feed answered {r.status}")
            body: dict[str, Any] = await r.json()
        return body

    async def _apply(self, event: dict[str, Any]) -> None:
        repository, digest, tag = event["repository"], event["digest"], event.get("tag")
        where = f"{ORIGIN}:{repository}"
        if event["kind"] == "push":
            route = Route(self.origin, repository)
            auth = f"Bearer {await self._token(repository)}"
            await self._manifest(route, digest, auth)
            if tag is not None:
                self.manifests.set_tag(where, tag, digest)
            self.metrics.prefetched.labels("manifest").inc()
        elif event["kind"] == "untag" and tag is not None:
            if self.manifests.tag_digest(where, tag) == digest:
                self.manifests.forget_tag(where, tag)
        elif event["kind"] == "delete":
            self.manifests.forget_manifest(where, digest)
        elif event["kind"] == "blob_delete":  # garbage collected at the origin: gone here too
            await self.blobs.store.discard(Digest.parse(digest))
        at = datetime.fromisoformat(str(event["at"]))
        self.metrics.lag.observe(max(time.time() - at.timestamp(), 0.0))

    async def _manifest(self, route: Route, digest: str, auth: str) -> None:
        """The manifest, its children and every blob they name, into the cache."""
        manifest = await self.manifests.prefetch(ManifestAsk(route, digest, auth, ACCEPT))
        parsed = parse_manifest(manifest.body, manifest.media_type, digest.partition(":")[0])
        for child in parsed.children:
            await self._manifest(route, str(child.digest), auth)
        for blob in parsed.blobs:
            await self.blobs.prefetch(Ask(route, route.name, Digest.parse(str(blob.digest)), auth))
            self.metrics.prefetched.labels("blob").inc()

    def _basic(self) -> str:
        return aiohttp.encode_basic_auth(
            self.config.replication_username, self.config.replication_password
        )

    async def _token(self, repository: str) -> str:
        found = self._tokens.get(repository)
        if found is None or not found.fresh:
            params = {"service": self.config.auth_service, "scope": f"repository:{repository}:pull"}
            try:
                found = await ask_token(
                    self.session,
                    self.config.realm,
                    params,
                    self.config.replication_username,
                    self.config.replication_password,
                )
            except TokenRefused as exc:
                raise Unreachable(str(exc)) from None
            self._tokens[repository] = found
        return found.value


def _load(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _save(path: Path, cursor: int) -> None:
    temp = path.with_suffix(".tmp")
    temp.write_text(f"{cursor}\n")
    os.replace(temp, path)
