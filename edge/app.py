"""The edge's composition root: every component is built here and reached by AppKey.

Cleanup contexts, in dependency order: the HTTP client and the upstreams, the origin's keys
(and their refresh), the local store (loaded, its access times flushed), the fills (cancelled
and awaited on shutdown), the sendfile threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from edge import api
from edge.blobs import Ask, EdgeBlobs
from edge.config import EdgeConfig
from edge.journal import Journal
from edge.jwks import OriginKeys
from edge.keys import (
    BLOBS,
    CONFIG,
    EDGE_PUSHES,
    MANIFESTS,
    ORIGIN_KEYS,
    SEEDER,
    STORE,
    SWARM,
    UPSTREAMS,
)
from edge.manifests import EdgeManifests
from edge.metrics import EdgeMetrics, PrefetchMetrics, ReplicationMetrics, SwarmMetrics
from edge.prefetch import Prefetcher
from edge.pushes import ORIGIN, EdgePushes
from edge.replication import Replicator
from edge.seeding import Seeder
from edge.store import BlobStore
from edge.swarm import EdgeSwarm
from edge.upstream import Upstream, Upstreams
from gossip import web as gossip_web
from gossip.ring import by_distance, home_edge
from gossip.web import MEMBERSHIP, SELF, membership_context
from ocicore.auth.enforce import Need, bearer_middleware
from ocicore.auth.tokens import TokenVerifier
from ocicore.digest import Digest
from ocicore.fills import Fills
from ocicore.tasks import repeat, running
from ocicore.torrent import Swarm, SwarmSettings
from ocicore.uploads import UploadService
from ocicore.web.health import Readiness, add_health_routes
from ocicore.web.metrics import METRICS, HttpMetrics, metrics_handler
from ocicore.web.middleware import oci_middleware
from ocicore.web.pushes import PUSHES, BlobPushes
from ocicore.web.sendfile import SendfilePool

_log = structlog.get_logger("wharf.edge")
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPLOAD_TTL = 7 * 24 * 3600.0  # an upload session left open this long is dropped


async def _client(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    timeout = aiohttp.ClientTimeout(
        total=None, connect=10, sock_connect=10, sock_read=config.header_timeout_seconds
    )
    connector = aiohttp.TCPConnector(limit=256, limit_per_host=128)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        app[SESSION] = session
        app[UPSTREAMS] = Upstreams(session, config)
        yield


async def _origin_keys(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    keys = OriginKeys(
        f"{config.origin.rstrip('/')}/auth/jwks",
        config.data_dir / "origin-jwks.json",
        config.auth_issuer,
        config.auth_service,
    )
    await asyncio.to_thread(keys.load_saved)
    app[ORIGIN_KEYS] = keys
    session = app[SESSION]
    try:
        await keys.refresh(session)
    except Exception as exc:  # the origin may be down: keep the saved keys, retry below
        _log.warning("origin keys not fetched", error=f"{type(exc).__name__}: {exc}")

    async def refresh() -> None:
        await keys.refresh(session)

    interval = config.jwks_refresh_seconds
    async with running(origin_keys=repeat(refresh, interval, "origin-keys", interval)):
        yield


async def _store(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = BlobStore(config.data_dir, config.cache_size)
    await asyncio.to_thread(store.load)
    app[STORE] = store
    metrics = EdgeMetrics.create(app[METRICS].registry, store)
    sendfile = SendfilePool()
    fills = Fills(config.max_fills, config.fill_timeout_seconds)
    app[BLOBS] = EdgeBlobs(store, fills, config, metrics, sendfile, _home_of(app))
    app[MANIFESTS] = EdgeManifests(store, config, metrics)

    async def flush() -> None:
        await asyncio.to_thread(store.flush)

    async with running(access_times=repeat(flush, 5.0, "access-times", 5.0)):
        yield
    await fills.close()
    await asyncio.to_thread(sendfile.close)
    await asyncio.to_thread(store.close)


async def _pushes(app: web.Application) -> AsyncIterator[None]:
    """Pushes (when the edge has a replicator account): the journal, the upload protocol over
    the edge's store, and the replicator that carries what was pushed to the origin."""
    config = app[CONFIG]
    if not config.accepts_pushes:
        yield
        return
    journal = Journal(config.data_dir / "journal.db")
    await journal.open()
    store, manifests = app[STORE], app[MANIFESTS]
    for digest in await journal.kept():
        store.pin(Digest.parse(digest))
    for item in await journal.pending():
        if item.tag is not None:
            manifests.pushed_tags[(f"{ORIGIN}:{item.repository}", item.tag)] += 1
    registry = app[METRICS].registry
    metrics = ReplicationMetrics.create(registry)
    metrics.depth.set_function(lambda: journal.depth)
    metrics.oldest.set_function(journal.oldest_age)
    replicator = Replicator(
        journal,
        store,
        manifests,
        app[UPSTREAMS].origin,
        app[SESSION],
        config,
        metrics,
    )
    pushes = EdgePushes(store, journal, manifests, app[UPSTREAMS], config, replicator.wake.set)
    in_progress = Gauge("wharf_edge_uploads_in_progress", "Open upload sessions", registry=registry)
    in_progress.set(len(await journal.upload_ids()))
    uploads = UploadService(store.files, journal, pushes.link, config.max_blob_bytes, in_progress)
    app[PUSHES] = BlobPushes(uploads, pushes.mount)
    app[EDGE_PUSHES] = pushes

    reap_every = min(600.0, config.pushed_blob_ttl_seconds / 4)

    async def reap() -> None:
        await uploads.expire(UPLOAD_TTL)
        ttl = config.pushed_blob_ttl_seconds  # blobs pushed without a manifest: let go
        for digest in await journal.expire_pushed(time.time() - ttl):
            store.unpin(Digest.parse(digest))

    tasks = {
        "replicator": replicator.run(),
        "upload_reaper": repeat(reap, reap_every, "upload-reaper", reap_every),
    }
    if config.prefetch:
        tasks["prefetcher"] = Prefetcher(
            app[BLOBS],
            manifests,
            app[UPSTREAMS].origin,
            app[SESSION],
            config,
            PrefetchMetrics.create(registry),
        ).run()
    try:
        async with running(**tasks):
            yield
    finally:
        await journal.close()


def _home_of(app: web.Application) -> Callable[[Ask], Upstream | None]:
    """The digest's home edge in this region, when that is another edge (and the blob comes
    from the origin: mirrors are not shared between edges)."""
    peers: dict[str, Upstream] = {}

    def home_of(ask: Ask) -> Upstream | None:
        if not app[CONFIG].cooperate or ask.route.upstream.mirror is not None:
            return None
        membership, me = app.get(MEMBERSHIP), app.get(SELF)
        if membership is None or me is None:
            return None
        home = home_edge(me, str(ask.digest), membership.peers())
        if home is None or home.id == me.id:
            return None
        found = peers.get(home.api_url)
        if found is None:
            found = peers[home.api_url] = Upstream(app[SESSION], home.api_url, name="peer")
        return found

    return home_of


async def _swarm(app: web.Application) -> AsyncIterator[None]:
    """The BitTorrent swarm (unless ``swarm`` is off): large blobs are fetched through it,
    and every large blob held is seeded."""
    config = app[CONFIG]
    if not config.swarm:
        yield
        return
    swarm = Swarm(
        SwarmSettings(
            listen=config.swarm_address,
            upload_rate=config.swarm_upload_bytes_per_second,
            download_rate=config.swarm_download_bytes_per_second,
            connections=config.swarm_connections,
        )
    )
    app[SWARM] = swarm
    store, blobs = app[STORE], app[BLOBS]
    metrics = SwarmMetrics.create(app[METRICS].registry)
    edge_swarm = EdgeSwarm(
        swarm,
        Seeder(
            store,
            swarm,
            config.data_dir / "torrents",
            config.swarm_threshold_bytes,
            config.data_dir / "swarm",
        ),
        config,
        metrics,
        _neighbours(app),
    )
    await asyncio.to_thread(edge_swarm.clear)
    seeder = app[SEEDER] = edge_swarm.seeder
    store.evict_listeners.append(seeder.evicted)
    blobs.on_commit.append(seeder.add)
    app[MANIFESTS].on_manifest.append(blobs.learn_sizes)
    await seeder.resume()
    blobs.swarm = edge_swarm
    swarm.on_ban = metrics.banned.inc
    metrics.torrents.set_function(lambda: len(swarm.active))
    sent = 0

    async def observe() -> None:
        nonlocal sent
        stats = swarm.stats
        metrics.sent.inc(max(stats.sent - sent, 0))
        sent = stats.sent
        metrics.peers.set(stats.peers)
        swarm.report()  # fresh counters for the next round

    try:
        async with running(swarm_stats=repeat(observe, 1.0, "swarm-stats", 1.0)):
            yield
    finally:
        blobs.swarm = None
        await app[BLOBS].fills.close()  # no fill may outlive the session it uses
        swarm.close()


def _neighbours(app: web.Application) -> Callable[[], list[tuple[str, int]]]:
    """Other edges' swarm addresses, from gossip: nearest first, at most 16."""

    def neighbours() -> list[tuple[str, int]]:
        membership, me = app.get(MEMBERSHIP), app.get(SELF)
        if membership is None or me is None:
            return []
        found = []
        for peer in by_distance(me, membership.peers()):
            host = urlsplit(peer.api_url).hostname
            if peer.role == "edge" and peer.id != me.id and peer.torrent_port and host:
                found.append((host, peer.torrent_port))
        return found[:16]

    return neighbours


def _verifier(app: web.Application) -> TokenVerifier:
    return app[ORIGIN_KEYS].verifier


def _public_mirror(request: web.Request, need: Need) -> bool:
    """Pulls of what a public mirror serves need no token."""
    if need.type != "repository" or need.action != "pull":
        return False
    route = request.app[UPSTREAMS].route(need.name, request.query.get("ns"))
    mirror = route.upstream.mirror
    return mirror is not None and mirror.public


def _readiness(app: web.Application) -> Readiness:
    async def keys() -> None:
        if not app[ORIGIN_KEYS].loaded:
            raise RuntimeError("the origin's signing keys are not known yet")

    return Readiness(checks={"origin_keys": keys})


_membership = membership_context(
    "edge",
    lambda app: app[CONFIG],
    lambda app: f"http://{app[CONFIG].host}:{app[CONFIG].port}",
    lambda app: app[SWARM].port if SWARM in app else 0,
)


def create_app(config: EdgeConfig) -> web.Application:
    app = web.Application(
        middlewares=[
            oci_middleware(),
            bearer_middleware(_verifier, config.realm, config.auth_service, _public_mirror),
        ]
    )
    app[CONFIG] = config
    app[METRICS] = HttpMetrics.create("edge", CollectorRegistry())
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    app.cleanup_ctx.extend([_client, _origin_keys, _store, _pushes, _swarm, _membership])
    add_health_routes(app, _readiness(app))
    app.router.add_get("/metrics", metrics_handler)
    api.add_routes(app, config.accepts_pushes)
    gossip_web.add_routes(app)
    return app
