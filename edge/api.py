"""The edge's HTTP API: the pull side of OCI Distribution, for every repository upstream."""

from __future__ import annotations

from aiohttp import web

from edge.blobs import Ask
from edge.keys import BLOBS, EDGE_PUSHES, MANIFESTS, SWARM, UPSTREAMS
from edge.manifests import ACCEPT, ManifestAsk
from edge.swarm import HOP, PORT
from edge.upstream import Route, Unreachable
from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.names import validate_name
from ocicore.web.pushes import add_upload_routes

NAME = "{name:[^{}]+}"
_PASSED_ON = ("Content-Type", "Link", "OCI-Filters-Applied")


def _route(request: web.Request) -> Route:
    name = validate_name(request.match_info["name"])
    ns = request.query.get("ns")
    return request.app[UPSTREAMS].route(name, ns)


async def base(request: web.Request) -> web.Response:
    return web.json_response({})


async def blob(request: web.Request) -> web.StreamResponse:
    route = _route(request)
    digest = Digest.parse(request.match_info["digest"])
    ask = Ask(
        route,
        request.match_info["name"],
        digest,
        request.headers.get("Authorization"),
        hop=HOP in request.headers,
    )
    return await request.app[BLOBS].serve(request, ask)


async def torrent(request: web.Request) -> web.Response:
    """``GET /v2/<name>/_wharf/torrents/<digest>``: an edge asks this one to join the swarm
    for a blob; the metainfo, and the port where this edge's swarm listens."""
    ask = Ask(
        _route(request),
        request.match_info["name"],
        Digest.parse(request.match_info["digest"]),
        request.headers.get("Authorization"),
        hop=True,
    )
    data = await request.app[BLOBS].torrent(ask)
    return web.Response(
        body=data,
        content_type="application/x-bittorrent",
        headers={PORT: str(request.app[SWARM].port)},
    )


async def manifest(request: web.Request) -> web.Response:
    route = _route(request)
    reference = request.match_info["reference"]
    if ":" in reference:
        Digest.parse(reference)
    elif not reference or len(reference) > 128:
        raise OCIError(ErrorCode.MANIFEST_INVALID, "invalid tag")
    ask = ManifestAsk(
        route,
        reference,
        request.headers.get("Authorization"),
        request.headers.get("Accept", ACCEPT)[:2048],
    )
    return await request.app[MANIFESTS].serve(request, ask)


async def passthrough(request: web.Request) -> web.Response:
    """Listings (tags, referrers, the catalog) are asked of the upstream each time."""
    upstreams = request.app[UPSTREAMS]
    if "name" in request.match_info:
        route = _route(request)
        suffix = request.path.split(f"/v2/{request.match_info['name']}", 1)[1]
        path, scope = f"/v2/{route.name}{suffix}", f"repository:{route.name}:pull"
        upstream = route.upstream
    else:
        path, scope, upstream = request.path, None, upstreams.origin
    if request.query_string:
        path += "?" + request.query_string
    try:
        async with upstream.request(
            "GET", path, request.headers.get("Authorization"), scope=scope
        ) as r:
            body = await r.content.read(4 << 20)
            headers = {k: r.headers[k] for k in _PASSED_ON if k in r.headers}
            return web.Response(status=r.status, body=body, headers=headers)
    except Unreachable:
        raise OCIError(ErrorCode.UNAVAILABLE, "the upstream is unreachable") from None


async def refuse_push(request: web.Request) -> web.Response:
    raise OCIError(ErrorCode.UNSUPPORTED, "this edge does not accept pushes: push to the origin")


async def refuse_delete(request: web.Request) -> web.Response:
    raise OCIError(ErrorCode.UNSUPPORTED, "deletes go to the origin")


async def put_manifest(request: web.Request) -> web.Response:
    return await request.app[EDGE_PUSHES].put_manifest(request)


def add_routes(app: web.Application, pushes: bool) -> None:
    r = app.router
    r.add_get(f"/v2/{NAME}/blobs/{{digest}}", blob)
    r.add_get(f"/v2/{NAME}/_wharf/torrents/{{digest}}", torrent)
    r.add_get(f"/v2/{NAME}/manifests/{{reference}}", manifest)
    r.add_get("/v2/", base)
    r.add_get(f"/v2/{NAME}/tags/list", passthrough)
    r.add_get(f"/v2/{NAME}/referrers/{{digest}}", passthrough)
    r.add_get("/v2/_catalog", passthrough)
    if pushes:
        add_upload_routes(r, NAME)
        r.add_put(f"/v2/{NAME}/manifests/{{reference}}", put_manifest)
    else:
        r.add_post(f"/v2/{NAME}/blobs/uploads/", refuse_push)
        r.add_put(f"/v2/{NAME}/manifests/{{reference}}", refuse_push)
    r.add_delete(f"/v2/{NAME}/manifests/{{reference}}", refuse_delete)
    r.add_delete(f"/v2/{NAME}/blobs/{{digest}}", refuse_delete)
