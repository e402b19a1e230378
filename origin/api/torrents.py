"""``GET /v2/<name>/_wharf/torrents/<digest>``: a blob's torrent metainfo (an OCI extension
route, so it is authorized exactly like the blob: pull on the repository).

With it comes ``X-Wharf-Seed-Token``: a short-lived token, bound to this blob of this
repository, that an edge puts in the query string of the blob's URL to use the origin as a
BEP 19 web seed (libtorrent cannot send an Authorization header).
"""

from __future__ import annotations

from aiohttp import web

from ocicore.auth.enforce import GRANT, seed_resource
from ocicore.auth.scopes import Scope
from ocicore.torrent import info_hash
from origin.api.common import digest_param, repo
from origin.keys import CONFIG, SIGNING_KEYS, TORRENTS


async def get(request: web.Request) -> web.Response:
    name = repo(request)
    digest = digest_param(request.match_info["digest"])
    data = await request.app[TORRENTS].get(name, digest)
    headers = {"X-Wharf-Info-Hash": info_hash(data), "Cache-Control": "private, max-age=60"}
    grant = request.get(GRANT)
    if grant is not None:
        config = request.app[CONFIG]
        token, _ = request.app[SIGNING_KEYS].issue(
            grant.subject,
            [Scope("blob", seed_resource(name, str(digest)), frozenset({"pull"}))],
            config.auth_issuer,
            config.auth_service,
            config.seed_token_ttl_seconds,
        )
        headers["X-Wharf-Seed-Token"] = token
    return web.Response(body=data, content_type="application/x-bittorrent", headers=headers)
