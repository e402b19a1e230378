"""The origin's composition root: every component is built here and reached by AppKey.

Each long-lived resource has a cleanup context, in dependency order: the database and the
services over it, the token machinery, the sendfile threads, the upload reaper.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry, Gauge

from gossip import web as gossip_web
from gossip.web import membership_context
from ocicore.auth.enforce import bearer_middleware
from ocicore.auth.tokens import TokenVerifier
from ocicore.cas import ContentStore
from ocicore.tasks import repeat, running
from ocicore.uploads import UploadService
from ocicore.web.health import Readiness, add_health_routes
from ocicore.web.metrics import METRICS, HttpMetrics, metrics_handler
from ocicore.web.middleware import oci_middleware
from ocicore.web.pushes import PUSHES, BlobPushes
from ocicore.web.sendfile import SendfilePool
from ocicore.web.serve import ON_DRAIN
from origin import api
from origin.admin.organizations import Organizations
from origin.admin.people import People
from origin.admin.repositories import Repositories
from origin.api import v1
from origin.audit import AuditLog
from origin.auth.accounts import AccountService
from origin.auth.bootstrap import ensure_admin, ensure_replicators
from origin.auth.ldap import LdapProvider
from origin.auth.oidc import OidcProvider
from origin.auth.signing import JWKS_MAX_AGE, SigningKeys
from origin.auth.throttle import Limits, LoginThrottle
from origin.auth.token_endpoint import TokenService
from origin.config import OriginConfig
from origin.keys import (
    AUDIT,
    BLOBS,
    CONFIG,
    CONTENT,
    MANIFESTS,
    META,
    OIDC,
    ORGANIZATIONS,
    PEOPLE,
    REPLICATION,
    REPOSITORIES,
    SENDFILE,
    SIGNING_KEYS,
    TOKENS,
    TORRENTS,
    UPLOADS,
    VERIFIER,
)
from origin.metadata.access import AccessStore
from origin.metadata.db import create_engine, migrate
from origin.metadata.store import MetadataStore
from origin.registry.blobs import BlobService
from origin.registry.cache import ReadCache
from origin.registry.manifests import ManifestService
from origin.registry.torrents import TorrentService
from origin.replication import Replication

_log = structlog.get_logger("wharf.origin")


async def _database(app: web.Application) -> AsyncIterator[None]:
    config, store = app[CONFIG], app[CONTENT]
    engine = create_engine(config.effective_database_url)
    await migrate(engine)
    meta = MetadataStore(engine)
    blobs = BlobService(
        store,
        meta,
        ReadCache(config.cache_entries, config.cache_ttl_seconds),
        config.small_blob_cache_bytes,
    )
    in_progress = Gauge(
        "wharf_origin_uploads_in_progress",
        "Open blob upload sessions",
        registry=app[METRICS].registry,
    )
    in_progress.set(await meta.count_uploads())
    app[META] = meta
    app[BLOBS] = blobs
    app[UPLOADS] = UploadService(store, meta, meta.link_blob, config.max_blob_bytes, in_progress)
    app[MANIFESTS] = ManifestService(
        meta, blobs, ReadCache(config.cache_entries, config.cache_ttl_seconds)
    )
    app[TORRENTS] = torrents = TorrentService(
        blobs, config.data_dir / "torrents", config.torrent_precompute_bytes
    )
    app[PUSHES] = BlobPushes(app[UPLOADS], blobs.mount, torrents.pushed)
    app[REPLICATION] = replication = Replication(engine, config.feed_max_wait_seconds)
    app.setdefault(ON_DRAIN, []).append(replication.close)
    yield
    await torrents.close()
    await engine.dispose()


async def _audit(app: web.Application) -> AsyncIterator[None]:
    audit = AuditLog(app[META].engine, app[CONFIG].data_dir / "audit-spool")
    app[AUDIT] = audit
    retention = timedelta(days=app[CONFIG].audit_retention_days)

    async def expire() -> None:
        cutoff = datetime.now(UTC) - retention
        pruned = await audit.prune(cutoff)
        if pruned:
            _log.info("expired audit events", count=pruned, before=cutoff.isoformat())

    async with running(
        audit_writer=audit.run(), audit_retention=repeat(expire, 3600, "audit-retention")
    ):
        yield
    await audit.flush()  # what the last requests recorded


async def _auth(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    keys = await asyncio.to_thread(SigningKeys.load_or_create, config.data_dir / "keys")
    hasher = PasswordHasher(time_cost=config.argon2_time_cost, memory_cost=config.argon2_memory_kib)
    directory = LdapProvider(config.ldap) if config.ldap is not None else None
    accounts = AccountService(
        AccessStore(app[META].engine), hasher, directory, config.refresh_token_ttl_seconds
    )
    await ensure_admin(accounts, config.data_dir)
    secret = config.replicator_password_file
    await ensure_replicators(accounts, config.replicators, Path(secret) if secret else None)
    app[SIGNING_KEYS] = keys
    # The origin checks tokens it signed itself: no clock between issuer and verifier to skew,
    # so a second of leeway (for `exp` being whole seconds) is all a token gets past its end.
    app[VERIFIER] = TokenVerifier(
        keys.public_keys(), config.auth_issuer, config.auth_service, leeway=1.0
    )
    app[TOKENS] = TokenService(
        accounts,
        keys,
        config.auth_issuer,
        config.auth_service,
        config.token_ttl_seconds,
        app[AUDIT],
        LoginThrottle(
            Limits(
                config.login_failures_per_account,
                config.login_failures_per_address,
                config.login_failure_window_seconds,
            )
        ),
        frozenset(config.replicators),
    )
    app[PEOPLE] = People(accounts, app[AUDIT])
    app[ORGANIZATIONS] = Organizations(accounts, app[AUDIT])
    app[REPOSITORIES] = Repositories(accounts, app[AUDIT])
    yield


async def _oidc(app: web.Application) -> AsyncIterator[None]:
    """The OpenID Provider's client, when ``[origin.oidc]`` is configured."""
    config = app[CONFIG].oidc
    if config is None:
        yield
        return
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=config.timeout_seconds)
    ) as session:
        app[OIDC] = OidcProvider(config, session)
        yield


async def _sendfile_pool(app: web.Application) -> AsyncIterator[None]:
    app[SENDFILE] = pool = SendfilePool()
    yield
    await asyncio.to_thread(pool.close)


async def _upload_reaper(app: web.Application) -> AsyncIterator[None]:
    """Expire abandoned upload sessions, checking a few times per TTL (at most every 10 min)."""
    uploads, ttl = app[UPLOADS], app[CONFIG].upload_ttl_seconds

    async def reap() -> None:
        expired = await uploads.expire(ttl)
        if expired:
            _log.info("expired upload sessions", count=expired)

    interval = min(ttl / 4, 600.0)
    async with running(upload_reaper=repeat(reap, interval, "upload-reaper", interval)):
        yield


async def jwks(request: web.Request) -> web.Response:
    """The public keys that sign the origin's tokens, for edges to verify them offline."""
    return web.json_response(
        request.app[SIGNING_KEYS].jwks(), headers={"Cache-Control": f"max-age={JWKS_MAX_AGE}"}
    )


async def _key_rotation(app: web.Application) -> AsyncIterator[None]:
    """Rotate the signing key when it is older than the rotation period, retire the keys no
    live token needs, and keep the verifier's keys in step (also with rotations made by an
    admin or another replica)."""
    config, keys, verifier = app[CONFIG], app[SIGNING_KEYS], app[VERIFIER]
    period = config.signing_key_rotation_days * 86400
    known = {key.kid for key in keys.keys}

    async def rotate() -> None:
        nonlocal known
        await asyncio.to_thread(keys.reload)
        if period > 0 and time.time() - keys.keys[-1].created > period:
            key = await asyncio.to_thread(keys.rotate)
            _log.info("rotated the signing key", next=key.kid, signing=keys.current.kid)
        retired = await asyncio.to_thread(
            keys.retire, max(config.token_ttl_seconds, config.seed_token_ttl_seconds)
        )
        if retired:
            _log.info("retired signing keys", kids=retired)
        if {key.kid for key in keys.keys} != known:
            verifier.set_keys(keys.public_keys())
            known = {key.kid for key in keys.keys}

    async with running(signing_key_rotation=repeat(rotate, 60, "signing-key-rotation")):
        yield


async def token(request: web.Request) -> web.Response:
    return await request.app[TOKENS].handle(request)


async def token_form(request: web.Request) -> web.Response:
    return await request.app[TOKENS].handle_form(request)


def _verifier(app: web.Application) -> TokenVerifier:
    return app[VERIFIER]


def _readiness(app: web.Application) -> Readiness:
    async def database() -> None:
        await app[META].ping()

    async def storage() -> None:
        root = app[CONTENT].root
        if not root.is_dir():
            raise RuntimeError(f"{root} is missing")

    return Readiness(checks={"database": database, "storage": storage})


_membership = membership_context(
    "origin", lambda app: app[CONFIG], lambda app: f"http://{app[CONFIG].host}:{app[CONFIG].port}"
)


def create_app(config: OriginConfig) -> web.Application:
    middlewares = [oci_middleware()]
    if config.auth_enabled:
        middlewares.append(
            bearer_middleware(_verifier, config.auth_realm or None, config.auth_service)
        )
    else:
        _log.warning("token auth is OFF: anyone who reaches this origin may push and delete")
    app = web.Application(middlewares=middlewares)
    app[CONFIG] = config
    app[METRICS] = HttpMetrics.create("origin", CollectorRegistry())
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # hashes and keys inside
    app[CONTENT] = ContentStore(config.data_dir)
    app.cleanup_ctx.extend(
        [
            _database,
            _audit,
            _auth,
            _key_rotation,
            _oidc,
            _sendfile_pool,
            _upload_reaper,
            _membership,
        ]
    )
    add_health_routes(app, _readiness(app))
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/auth/jwks", jwks)
    app.router.add_get("/auth/token", token)
    app.router.add_post("/auth/token", token_form)
    api.add_routes(app)
    v1.add_routes(app)
    gossip_web.add_routes(app)
    return app
