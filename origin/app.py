"""The origin's composition root: every component is built here and reached by AppKey."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from ocicore.cas import ContentStore
from ocicore.web.health import Readiness, add_health_routes
from ocicore.web.metrics import METRICS, HttpMetrics, metrics_handler
from ocicore.web.middleware import oci_middleware
from ocicore.web.sendfile import SendfilePool
from origin import api
from origin.auth.signing import SigningKeys
from origin.config import OriginConfig
from origin.keys import BLOBS, CONFIG, MANIFESTS, META, SENDFILE, SIGNING_KEYS, UPLOADS
from origin.metadata.db import create_engine, migrate
from origin.metadata.store import MetadataStore
from origin.registry.blobs import BlobService
from origin.registry.cache import ReadCache
from origin.registry.manifests import ManifestService
from origin.registry.uploads import UploadService

_log = structlog.get_logger("wharf.origin")


async def _reap_uploads(uploads: UploadService, ttl: float) -> None:
    """Expire abandoned upload sessions, checking a few times per TTL (at most every 10 min)."""
    interval = min(ttl / 4, 600.0)
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await uploads.expire(ttl)
        except Exception:  # keep reaping: the next round may succeed
            _log.exception("upload reaper failed")
        else:
            if expired:
                _log.info("expired upload sessions", count=expired)


async def jwks(request: web.Request) -> web.Response:
    """The public keys that sign the origin's tokens, for edges to verify them offline."""
    return web.json_response(
        request.app[SIGNING_KEYS].jwks(), headers={"Cache-Control": "max-age=300"}
    )


def create_app(config: OriginConfig) -> web.Application:
    app = web.Application(middlewares=[oci_middleware()])
    app[CONFIG] = config
    registry = CollectorRegistry()
    app[METRICS] = HttpMetrics.create("origin", registry)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = ContentStore(config.data_dir)
    in_progress = Gauge(
        "wharf_origin_uploads_in_progress", "Open blob upload sessions", registry=registry
    )

    async def database(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(config.effective_database_url)
        await migrate(engine)
        meta = MetadataStore(engine)
        blobs = BlobService(
            store,
            meta,
            ReadCache(config.cache_entries, config.cache_ttl_seconds),
            config.small_blob_cache_bytes,
        )
        app[META] = meta
        app[BLOBS] = blobs
        app[UPLOADS] = UploadService(store, meta, config.max_blob_bytes, in_progress)
        app[MANIFESTS] = ManifestService(
            meta, blobs, ReadCache(config.cache_entries, config.cache_ttl_seconds)
        )
        in_progress.set(await meta.count_uploads())
        yield
        await engine.dispose()

    app.cleanup_ctx.append(database)

    async def upload_reaper(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(
            _reap_uploads(app[UPLOADS], config.upload_ttl_seconds), name="upload-reaper"
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(upload_reaper)

    async def sendfile_pool(app: web.Application) -> AsyncIterator[None]:
        app[SENDFILE] = pool = SendfilePool()
        yield
        await asyncio.to_thread(pool.close)

    app.cleanup_ctx.append(sendfile_pool)

    async def signing_keys(app: web.Application) -> AsyncIterator[None]:
        app[SIGNING_KEYS] = await asyncio.to_thread(
            SigningKeys.load_or_create, config.data_dir / "keys"
        )
        yield

    app.cleanup_ctx.append(signing_keys)
    app.router.add_get("/auth/jwks", jwks)

    async def check_database() -> None:
        await app[META].ping()

    async def check_storage() -> None:
        if not store.root.is_dir():
            raise RuntimeError(f"{store.root} is missing")

    add_health_routes(app, Readiness(checks={"database": check_database, "storage": check_storage}))
    app.router.add_get("/metrics", metrics_handler)
    api.add_routes(app)
    return app
