"""The origin's composition root: every component is built here and reached by AppKey.

Each long-lived resource has a cleanup context, in dependency order: the database and the
services over it, the token machinery, the sendfile threads, the upload reaper.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
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
from ocicore.tasks import repeat, running
from ocicore.uploads import UploadService
from ocicore.web.health import Readiness, add_health_routes
from ocicore.web.metrics import METRICS, HttpMetrics, metrics_handler
from ocicore.web.middleware import oci_middleware
from ocicore.web.pushes import PUSHES, BlobPushes
from ocicore.web.sendfile import SendfilePool
from ocicore.web.serve import ON_DRAIN
from origin import api
from origin.admin.history import Quotas, TagRules, TimeMachine
from origin.admin.organizations import Organizations
from origin.admin.people import People
from origin.admin.repositories import Repositories
from origin.admin.webhooks import WebhookAdmin
from origin.api import v1
from origin.audit import AuditLog
from origin.auth.accounts import AccountService
from origin.auth.bootstrap import ensure_admin, ensure_replicators
from origin.auth.ldap import LdapProvider
from origin.auth.oidc import OidcProvider
from origin.auth.signing import JWKS_MAX_AGE, KEY_REFRESH_SECONDS, FolderVault, SigningKeys
from origin.auth.throttle import Limits, LoginThrottle
from origin.auth.token_endpoint import TokenService
from origin.config import OriginConfig
from origin.gc import Collector
from origin.keys import (
    AUDIT,
    BLOBS,
    COLLECTOR,
    CONFIG,
    LEADERSHIP,
    LOCATIONS,
    MANIFESTS,
    META,
    OIDC,
    ORGANIZATIONS,
    PEOPLE,
    PLACEMENTS,
    QUOTAS,
    REPLICATION,
    REPOSITORIES,
    SENDFILE,
    SIGNING_KEYS,
    SINGLETONS,
    TAG_RULES,
    TIME_MACHINE,
    TOKENS,
    TORRENTS,
    UPLOADS,
    VERIFIER,
    WEBHOOK_ADMIN,
)
from origin.leader import Leadership
from origin.locations import Locations
from origin.metadata.access import AccessStore
from origin.metadata.db import create_engine, create_lock_engine, migrate
from origin.metadata.history import HistoryStore
from origin.metadata.immutable import ImmutableRules
from origin.metadata.keys import TableVault
from origin.metadata.placements import Copy, Placements
from origin.metadata.store import MetadataStore
from origin.metadata.webhooks import WebhookStore
from origin.placement import Copier
from origin.registry.blobs import BlobService
from origin.registry.cache import ReadCache
from origin.registry.manifests import ManifestService
from origin.registry.torrents import TorrentService
from origin.replication import Replication
from origin.webhooks import PublicResolver, Webhooks

_log = structlog.get_logger("wharf.origin")


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    locations = await Locations.open(config.locations, config.data_dir, config.region)
    app[LOCATIONS] = locations
    engine = create_engine(config.effective_database_url)
    await migrate(engine)
    locks = create_lock_engine(config.effective_database_url)
    meta = MetadataStore(engine, config.placement_defaults if len(locations) > 1 else (), locks)
    blobs = BlobService(
        locations,
        meta,
        ReadCache(config.cache_entries, config.cache_ttl_seconds),
        config.small_blob_cache_bytes,
        refresh_seconds=config.gc_grace_seconds / 4,
    )
    in_progress = Gauge(
        "wharf_origin_uploads_in_progress",
        "Open blob upload sessions",
        registry=app[METRICS].registry,
    )
    in_progress.set(await meta.count_uploads())
    app[META] = meta
    app[BLOBS] = blobs
    app[UPLOADS] = UploadService(
        locations.primary,
        meta,
        partial(meta.link_blob, stored_at=locations.primary.name),
        config.max_blob_bytes,
        in_progress,
        claim=lambda digest, size: meta.claim_blob(str(digest), size),
    )
    app[MANIFESTS] = ManifestService(
        meta, blobs, ReadCache(config.cache_entries, config.cache_ttl_seconds)
    )
    app[TORRENTS] = torrents = TorrentService(
        blobs, config.data_dir / "torrents", config.torrent_precompute_bytes
    )
    app[PUSHES] = BlobPushes(app[UPLOADS], blobs.mount, torrents.pushed)
    app[REPLICATION] = replication = Replication(engine, config.feed_max_wait_seconds)
    app.setdefault(ON_DRAIN, []).append(replication.close)
    app[COLLECTOR] = collector = Collector(
        meta,
        locations,
        app[METRICS].registry,
        config.gc_grace_seconds,
        int(config.time_machine_days * 86400),
        [blobs.forget, torrents.forget],
        replication.changed,
    )
    if config.gc_interval_seconds:
        app[SINGLETONS]["garbage_collection"] = partial(collector.run, config.gc_interval_seconds)
    yield
    await torrents.close()
    await engine.dispose()
    if locks is not None:
        await locks.dispose()
    await locations.close()


async def _audit(app: web.Application) -> AsyncIterator[None]:
    audit = AuditLog(app[META].engine, app[CONFIG].data_dir / "audit-spool")
    app[AUDIT] = audit
    retention = timedelta(days=app[CONFIG].audit_retention_days)

    async def expire() -> None:
        cutoff = datetime.now(UTC) - retention
        pruned = await audit.prune(cutoff)
        if pruned:
            _log.info("expired audit events", count=pruned, before=cutoff.isoformat())

    app[SINGLETONS]["audit_retention"] = lambda: repeat(expire, 3600, "audit-retention")
    async with running(audit_writer=audit.run()):
        yield
    await audit.flush()  # what the last requests recorded


async def _auth(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    vault = TableVault(app[META].engine)
    if await vault.adopt(FolderVault(config.data_dir / "keys")):
        _log.info("signing keys moved from the data directory into the database")
    keys = await SigningKeys.open(vault)
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
            app[META].engine,
            Limits(
                config.login_failures_per_account,
                config.login_failures_per_address,
                config.login_failure_window_seconds,
            ),
        ),
        frozenset(config.replicators),
    )
    app[PEOPLE] = People(accounts, app[AUDIT])
    app[ORGANIZATIONS] = Organizations(accounts, app[AUDIT])
    app[REPOSITORIES] = Repositories(accounts, app[AUDIT])
    app[TIME_MACHINE] = TimeMachine(
        accounts,
        app[AUDIT],
        app[META],
        HistoryStore(app[META].engine),
        app[MANIFESTS],
        int(config.time_machine_days * 86400),
    )
    app[TAG_RULES] = TagRules(accounts, app[AUDIT], ImmutableRules(app[META].engine))
    app[QUOTAS] = Quotas(accounts, app[AUDIT], app[META], HistoryStore(app[META].engine))
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
    """Expire abandoned upload sessions, checking a few times per TTL (at most every 10 min),
    and failed sign-ins past the throttle's window."""
    uploads, ttl = app[UPLOADS], app[CONFIG].upload_ttl_seconds
    throttle = app[TOKENS].throttle

    locations = app[LOCATIONS]

    async def reap() -> None:
        expired = await uploads.expire(ttl)
        if expired:
            _log.info("expired upload sessions", count=expired)
        # Uploads other replicas (other regions) opened, and copies a killed copier left.
        others = [store for store in locations.stores.values() if store is not locations.primary]
        live = await app[META].upload_ids() if others else set()
        for store in others:
            for upload_id in await store.stale_uploads(ttl):
                if upload_id not in live:
                    await store.abort_upload(upload_id)
        await throttle.prune()

    async def recount() -> None:
        # Other replicas open and close sessions too: every replica reports the shared count.
        uploads.in_progress.set(await app[META].count_uploads())

    interval = min(ttl / 4, 600.0)
    app[SINGLETONS]["upload_reaper"] = lambda: repeat(reap, interval, "upload-reaper", interval)
    async with running(upload_count=repeat(recount, 30, "upload-count", 30)):
        yield


async def jwks(request: web.Request) -> web.Response:
    """The public keys that sign the origin's tokens, for edges to verify them offline."""
    return web.json_response(
        request.app[SIGNING_KEYS].jwks(), headers={"Cache-Control": f"max-age={JWKS_MAX_AGE}"}
    )


async def _key_rotation(app: web.Application) -> AsyncIterator[None]:
    """Every replica reads the keys again each minute and keeps its verifier in step (with
    rotations made by the leader, an admin or another replica); the leader rotates the signing
    key when it is older than the rotation period and retires the keys no live token needs."""
    config, keys, verifier = app[CONFIG], app[SIGNING_KEYS], app[VERIFIER]
    period = config.signing_key_rotation_days * 86400
    known = {key.kid for key in keys.keys}

    async def refresh() -> None:
        nonlocal known
        await keys.reload()
        if {key.kid for key in keys.keys} != known:
            verifier.set_keys(keys.public_keys())
            known = {key.kid for key in keys.keys}

    async def rotate() -> None:
        await keys.reload()
        if period > 0 and time.time() - keys.keys[-1].created > period:
            key = await keys.rotate()
            _log.info("rotated the signing key", next=key.kid, signing=keys.current.kid)
        retired = await keys.retire(max(config.token_ttl_seconds, config.seed_token_ttl_seconds))
        if retired:
            _log.info("retired signing keys", kids=retired)
        await refresh()

    app[SINGLETONS]["signing_key_rotation"] = lambda: repeat(rotate, 60, "signing-key-rotation")
    every = KEY_REFRESH_SECONDS
    async with running(signing_key_refresh=repeat(refresh, every, "signing-key-refresh", every)):
        yield


async def _webhooks(app: web.Application) -> AsyncIterator[None]:
    """Webhooks: delivered by the leader (a singleton); test deliveries from any replica."""
    config = app[CONFIG]
    # Names resolve to public addresses only, unless private networks are allowed.
    resolver = None if config.webhooks_private_networks else PublicResolver()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as http:
        hooks = Webhooks(
            WebhookStore(app[META].engine),
            http,
            app[METRICS].registry,
            config.webhooks_private_networks,
            config.webhook_max_attempts,
            retry_base=config.webhook_retry_base_seconds,
        )
        app[WEBHOOK_ADMIN] = WebhookAdmin(app[PEOPLE].accounts, app[AUDIT], hooks)
        app[SINGLETONS]["webhooks"] = hooks.run
        yield


async def _placement(app: web.Application) -> AsyncIterator[None]:
    """The copier that places blobs in every location their namespace needs (a singleton),
    and the gauge of copies pending per location (every replica)."""
    config, locations = app[CONFIG], app[LOCATIONS]
    placements = Placements(app[META].engine, config.placement_defaults)
    app[PLACEMENTS] = placements
    hooks = app[WEBHOOK_ADMIN].webhooks

    async def stuck(copy: Copy, error: str) -> None:
        await hooks.notify(
            await placements.namespaces_of(copy.digest),
            "replication_failure",
            {"digest": copy.digest, "location": copy.location, "error": error},
        )

    copier = Copier(placements, locations, app[METRICS].registry, config.placement_copies, stuck)
    if len(locations) == 1:  # nothing to copy, nothing pending
        yield
        return
    app[SINGLETONS]["placement_copier"] = copier.run
    async with running(placement_gauge=repeat(copier.count_pending, 5, "placement-gauge")):
        yield


async def _leadership(app: web.Application) -> AsyncIterator[None]:
    """The singleton workers run on the one replica holding the lock (:mod:`origin.leader`)."""
    meta = app[META]
    leadership = Leadership(
        meta.locks or meta.engine, app[METRICS].registry, app[CONFIG].leader_poll_seconds
    )
    app[LEADERSHIP] = leadership
    workers = app[SINGLETONS]

    async def lead() -> None:
        async with running(**{name: start() for name, start in workers.items()}):
            await asyncio.Event().wait()

    async with running(leadership=leadership.run(lead)):
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
        await app[LOCATIONS].primary.driver.ping()

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
    app[SINGLETONS] = {}
    app[METRICS] = HttpMetrics.create("origin", CollectorRegistry())
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # hashes and keys inside
    app.cleanup_ctx.extend(
        [
            _database,
            _audit,
            _auth,
            _key_rotation,
            _oidc,
            _sendfile_pool,
            _upload_reaper,
            _webhooks,
            _placement,
            _leadership,
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
