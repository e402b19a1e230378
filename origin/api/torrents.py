"""``GET /v2/<name>/_wharf/torrents/<digest>``: a blob's torrent metainfo (an OCI extension
route, so it is authorized exactly like the blob: pull on the repository)."""

from __future__ import annotations

from aiohttp import web

from ocicore.torrent import info_hash
from origin.api.common import digest_param, repo
from origin.keys import TORRENTS


async def get(request: web.Request) -> web.Response:
    data = await request.app[TORRENTS].get(
        repo(request), digest_param(request.match_info["digest"])
    )
    return web.Response(
        body=data,
        content_type="application/x-bittorrent",
        headers={"X-Wharf-Info-Hash": info_hash(data), "Cache-Control": "max-age=31536000"},
    )
