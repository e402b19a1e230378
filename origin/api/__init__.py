"""The origin's HTTP API: thin handlers over the services in ``origin.registry``."""

from __future__ import annotations

from aiohttp import web

from ocicore.web.pushes import add_upload_routes
from origin.api import blobs, listing, manifests, torrents

NAME = "{name:[^{}]+}"


async def base(request: web.Request) -> web.Response:
    return web.json_response({})


def add_routes(app: web.Application) -> None:
    """Routes in the order they are tried: the hottest (pulls) first."""
    r = app.router
    r.add_get(f"/v2/{NAME}/blobs/{{digest}}", blobs.get)
    r.add_get(f"/v2/{NAME}/manifests/{{reference}}", manifests.get)
    r.add_get("/v2/", base)
    add_upload_routes(r, NAME)
    r.add_put(f"/v2/{NAME}/manifests/{{reference}}", manifests.put)
    r.add_get(f"/v2/{NAME}/tags/list", listing.tags)
    r.add_get(f"/v2/{NAME}/referrers/{{digest}}", listing.referrers)
    r.add_get("/v2/_catalog", listing.catalog)
    r.add_get(f"/v2/{NAME}/_wharf/torrents/{{digest}}", torrents.get)
    r.add_delete(f"/v2/{NAME}/manifests/{{reference}}", manifests.delete)
    r.add_delete(f"/v2/{NAME}/blobs/{{digest}}", blobs.delete)
