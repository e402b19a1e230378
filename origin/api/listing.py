"""Listings: ``/v2/_catalog``, ``/v2/<name>/tags/list`` and the referrers API."""

from __future__ import annotations

import json

from aiohttp import web

from ocicore.errors import ErrorCode, OCIError
from ocicore.manifest import OCI_INDEX
from origin.api.common import digest_param, next_link, page, repo
from origin.keys import MANIFESTS, META


async def catalog(request: web.Request) -> web.Response:
    n, last = page(request)
    names = await request.app[META].list_repositories(n, last) if n else []
    return web.json_response({"repositories": names}, headers=next_link("/v2/_catalog", names, n))


async def tags(request: web.Request) -> web.Response:
    name = repo(request)
    n, last = page(request)
    found = await request.app[META].list_tags(name, n, last)
    if found is None:
        raise OCIError(ErrorCode.NAME_UNKNOWN, name)
    return web.json_response(
        {"name": name, "tags": found}, headers=next_link(f"/v2/{name}/tags/list", found, n)
    )


async def referrers(request: web.Request) -> web.Response:
    name = repo(request)
    subject = digest_param(request.match_info["digest"])
    artifact_type = request.query.get("artifactType")
    found = await request.app[MANIFESTS].referrers(name, subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d.to_json() for d in found]}
    return web.Response(body=json.dumps(index).encode(), content_type=OCI_INDEX, headers=headers)
