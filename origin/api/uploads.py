"""``/v2/<name>/blobs/uploads/``: monolithic, chunked and streamed uploads, and mounts."""

from __future__ import annotations

from aiohttp import web

from ocicore.auth.enforce import GRANT
from ocicore.errors import ErrorCode, OCIError
from ocicore.names import validate_name
from origin.api.common import body, content_range, digest_param, repo
from origin.keys import BLOBS, TORRENTS, UPLOADS


def _session_headers(name: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(offset - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest},
    )


async def start(request: web.Request) -> web.Response:
    name = repo(request)
    uploads = request.app[UPLOADS]
    mount = request.query.get("mount")
    if mount is not None:
        digest = digest_param(mount)
        source = request.query.get("from")
        if (
            source is not None
            and request[GRANT].allows("repository", validate_name(source), "pull")
            and await request.app[BLOBS].mount(name, digest, source)
        ):
            return _created(name, str(digest))
    elif "digest" in request.query:
        digest = digest_param(request.query["digest"])
        size = await uploads.monolithic(name, digest, body(request))
        request.app[TORRENTS].pushed(name, digest, size)
        return _created(name, str(digest))
    upload_id = await uploads.start(name)
    return web.Response(status=202, headers=_session_headers(name, upload_id, 0))


async def status(request: web.Request) -> web.Response:
    name = repo(request)
    upload = await request.app[UPLOADS].get(name, request.match_info["upload_id"])
    return web.Response(status=204, headers=_session_headers(name, upload.id, upload.offset))


async def patch(request: web.Request) -> web.Response:
    name = repo(request)
    upload_id = request.match_info["upload_id"]
    uploads = request.app[UPLOADS]
    try:
        chunk = content_range(request)
        offset = await uploads.append(name, upload_id, body(request), chunk)
    except OCIError as exc:
        if exc.code is ErrorCode.RANGE_INVALID:
            upload = await uploads.get(name, upload_id)
            exc.headers.update(_session_headers(name, upload_id, upload.offset))
        raise
    return web.Response(status=202, headers=_session_headers(name, upload_id, offset))


async def put(request: web.Request) -> web.Response:
    name = repo(request)
    upload_id = request.match_info["upload_id"]
    if "digest" not in request.query:
        raise OCIError(ErrorCode.DIGEST_INVALID, "digest query parameter is required")
    digest = digest_param(request.query["digest"])
    chunk = content_range(request)
    size = await request.app[UPLOADS].finish(name, upload_id, digest, body(request), chunk)
    request.app[TORRENTS].pushed(name, digest, size)
    return _created(name, str(digest))


async def cancel(request: web.Request) -> web.Response:
    name = repo(request)
    await request.app[UPLOADS].cancel(name, request.match_info["upload_id"])
    return web.Response(status=204)
