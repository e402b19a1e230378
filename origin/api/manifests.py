"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT and DELETE by tag or digest."""

from __future__ import annotations

from aiohttp import web

from ocicore.manifest import parse_reference
from ocicore.web.pushes import read_manifest
from origin.api.common import audit, repo
from origin.keys import CONFIG, MANIFESTS, REPLICATION


async def get(request: web.Request) -> web.Response:
    name = repo(request)
    reference = parse_reference(request.match_info["reference"])
    found = await request.app[MANIFESTS].get(name, reference)
    etag = f'"{found.digest}"'
    headers = {"Docker-Content-Digest": found.digest, "ETag": etag}
    if request.method == "GET":
        audit(request, "pull", name, found.digest)
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.payload, content_type=found.media_type, headers=headers)


async def put(request: web.Request) -> web.Response:
    name = repo(request)
    reference = parse_reference(request.match_info["reference"])
    payload = await read_manifest(request, request.app[CONFIG].max_manifest_bytes)
    manifest = await request.app[MANIFESTS].put(
        name, reference, payload, request.headers.get("Content-Type")
    )
    digest = str(manifest.digest)
    tag = reference if isinstance(reference, str) else None
    audit(request, "push", name, digest, {"tag": tag} if tag else None)
    request.app[REPLICATION].changed()
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
    if manifest.subject is not None:
        headers["OCI-Subject"] = str(manifest.subject.digest)
    return web.Response(status=201, headers=headers)


async def delete(request: web.Request) -> web.Response:
    name = repo(request)
    reference = parse_reference(request.match_info["reference"])
    await request.app[MANIFESTS].delete(name, reference)
    audit(request, "delete", name, str(reference))
    request.app[REPLICATION].changed()
    return web.Response(status=202)
