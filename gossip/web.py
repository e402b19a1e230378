"""Membership inside a node's app: started with it, stopped with it, shown at
``GET /_wharf/members`` (what ``wharf gossip members`` prints)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from importlib.metadata import version

from aiohttp import web

from gossip.membership import Membership
from gossip.node import NodeSettings, start
from gossip.peer import Peer
from ocicore.tasks import running

MEMBERSHIP = web.AppKey("membership", Membership)
SELF = web.AppKey("self", Peer)


def membership_context(
    role: str,
    settings: Callable[[web.Application], NodeSettings],
    listen: Callable[[web.Application], str],
    torrent_port: Callable[[web.Application], int] = lambda app: 0,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running this node's membership for as long as the app lives
    (after the contexts that start its servers: ``torrent_port`` is asked at startup)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        node = settings(app)
        me = node.me(role, listen(app), version("wharf"), torrent_port(app))
        membership, run = start(me, node.gossip())
        app[MEMBERSHIP] = membership
        app[SELF] = me
        if run is None:
            yield
            return
        async with running(membership=run):
            yield

    return context


async def members(request: web.Request) -> web.Response:
    now = time.time()
    return web.json_response(
        [
            {
                "id": p.id,
                "role": p.role,
                "region": p.region,
                "zone": p.zone,
                "api_url": p.api_url,
                "torrent_port": p.torrent_port,
                "healthy": p.healthy,
                "version": p.version,
                "age_seconds": round(now - p.since, 1) if p.since else None,
            }
            for p in request.app[MEMBERSHIP].peers()
        ]
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_wharf/members", members)
