"""``/v2/<name>/blobs/<digest>``: GET and HEAD (with Range, by sendfile), DELETE."""

from __future__ import annotations

from aiohttp import web

from ocicore.web.sendfile import BlobFileResponse
from origin.api.common import audit, digest_param, repo
from origin.keys import BLOBS, SENDFILE


async def get(request: web.Request) -> web.StreamResponse:
    name = repo(request)
    digest = digest_param(request.match_info["digest"])
    info = await request.app[BLOBS].stat(name, digest)
    headers = {
        "Docker-Content-Digest": str(digest),
        "Content-Type": "application/octet-stream",
        "Cache-Control": "max-age=31536000, immutable",
    }
    if request.method == "HEAD":
        # No need to open the file (FileResponse would, in a thread) to say how big it is.
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Length"] = str(info.size)
        return web.Response(headers=headers)
    if "Range" not in request.headers:
        data = await request.app[BLOBS].small_content(info)
        if data is not None:
            return web.Response(body=data, headers=headers)
    return BlobFileResponse(info.path, request.app[SENDFILE], headers=headers)


async def delete(request: web.Request) -> web.Response:
    name = repo(request)
    digest = digest_param(request.match_info["digest"])
    await request.app[BLOBS].delete(name, digest)
    audit(request, "delete", name, str(digest))
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})
