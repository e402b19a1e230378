"""The edge's composition root: every component is built here and reached by AppKey.

Cleanup contexts, in dependency order: the HTTP client and the upstreams, the origin's keys
(and their refresh), the local store (loaded, its access times flushed), the fills (cancelled
and awaited on shutdown), the sendfile threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from edge import api
from edge.blobs import Ask, EdgeBlobs
from edge.config import EdgeConfig
from edge.jwks import OriginKeys
from edge.keys import BLOBS, CONFIG, MANIFESTS, ORIGIN_KEYS, SEEDER, STORE, UPSTREAMS
from edge.manifests import EdgeManifests
from edge.metrics import EdgeMetrics
from edge.seeding import Seeder
from edge.store import BlobStore
from edge.upstream import Upstream, Upstreams
from gossip import web as gossip_web
from gossip.ring import home_edge
from gossip.web import MEMBERSHIP, SELF, membership_context
from ocicore.auth.enforce import Need, bearer_middleware
from ocicore.auth.tokens import TokenVerifier
from ocicore.fills import Fills
from ocicore.tasks import repeat, running
from ocicore.torrent import Swarm
from ocicore.web.health import Readiness, add_health_routes
from ocicore.web.metrics import METRICS, HttpMetrics, metrics_handler
from ocicore.web.middleware import oci_middleware
from ocicore.web.sendfile import SendfilePool

_log = structlog.get_logger("wharf.edge")
SESSION = web.AppKey("session", aiohttp.ClientSession)


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
    """Seed the large blobs this edge holds (when ``swarm_listen`` is set)."""
    config = app[CONFIG]
    if not config.swarm_listen:
        yield
        return
    swarm = Swarm(config.swarm_listen)
    store = app[STORE]
    seeder = Seeder(store, swarm, config.data_dir / "torrents", config.swarm_threshold_bytes)
    app[SEEDER] = seeder
    store.evict_listeners.append(seeder.evicted)
    app[BLOBS].on_commit.append(seeder.add)
    await seeder.resume()
    try:
        yield
    finally:
        swarm.close()


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
    "edge", lambda app: app[CONFIG], lambda app: f"http://{app[CONFIG].host}:{app[CONFIG].port}"
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
    app.cleanup_ctx.extend([_client, _origin_keys, _store, _swarm, _membership])
    add_health_routes(app, _readiness(app))
    app.router.add_get("/metrics", metrics_handler)
    api.add_routes(app)
    gossip_web.add_routes(app)
    return app
