"""The push side of ``/v2/<name>/blobs/uploads/`` (monolithic, chunked and streamed uploads,
and mounts) and the request parsing every push needs; the same at the origin and the edges.

What differs between them comes in a :class:`BlobPushes` under the app's ``PUSHES`` key: the
upload service (with its own sessions and links), how a blob is mounted from another
repository, and what to do once a blob is pushed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ocicore.auth.enforce import GRANT
from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.names import validate_name
from ocicore.uploads import ChunkRange, UploadService
from ocicore.web.middleware import BYTES_IN

_CONTENT_RANGE = re.compile(r"^(?:bytes )?(\d{1,19})-(\d{1,19})$")


def body(request: web.Request) -> AsyncIterator[bytes] | None:
    """The request body as it arrives (None when there is none), counted for the logs."""
    return _counted(request) if request.body_exists else None


async def _counted(request: web.Request) -> AsyncIterator[bytes]:
    received = 0
    try:
        async for chunk in request.content.iter_any():
            received += len(chunk)
            yield chunk
    finally:
        request[BYTES_IN] = received


def content_range(request: web.Request) -> ChunkRange | None:
    header = request.headers.get("Content-Range")
    if header is None:
        return None
    match = _CONTENT_RANGE.match(header.strip())
    if not match or int(match[1]) > int(match[2]):
        raise OCIError(ErrorCode.RANGE_INVALID, f"malformed Content-Range {header[:60]!r}")
    chunk = ChunkRange(int(match[1]), int(match[2]))
    if request.content_length is not None and request.content_length != chunk.length:
        raise OCIError(ErrorCode.SIZE_INVALID, "Content-Length does not match Content-Range")
    return chunk


async def read_manifest(request: web.Request, limit: int) -> bytes:
    """A pushed manifest's bytes, refused (413 MANIFEST_INVALID) past ``limit``."""
    too_big = OCIError(ErrorCode.MANIFEST_INVALID, f"manifest exceeds {limit} bytes", status=413)
    if request.content_length is not None and request.content_length > limit:
        raise too_big
    data = bytearray()
    try:
        async for chunk in request.content.iter_any():
            data += chunk
            if len(data) > limit:
                raise too_big
    finally:
        request[BYTES_IN] = len(data)
    return bytes(data)


async def _no_mount(name: str, digest: Digest, source: str) -> bool:
    return False


def _nothing(name: str, digest: Digest, size: int) -> None:
    return None


@dataclass(frozen=True)
class BlobPushes:
    uploads: UploadService
    # Link blob ``digest`` of repository ``source`` into ``name`` (the caller may pull
    # ``source``); False when ``source`` lacks it.
    mount: Callable[[str, Digest, str], Awaitable[bool]] = _no_mount
    pushed: Callable[[str, Digest, int], None] = _nothing  # after each blob pushed


PUSHES = web.AppKey("blob_pushes", BlobPushes)


def _repo(request: web.Request) -> str:
    return validate_name(request.match_info["name"])


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
    name = _repo(request)
    pushes = request.app[PUSHES]
    mount = request.query.get("mount")
    if mount is not None:
        digest = Digest.parse(mount)
        source = request.query.get("from")
        grant = request.get(GRANT)
        if (
            source is not None
            and (grant is None or grant.allows("repository", validate_name(source), "pull"))
            and await pushes.mount(name, digest, source)
        ):
            return _created(name, str(digest))
    elif "digest" in request.query:
        digest = Digest.parse(request.query["digest"])
        size = await pushes.uploads.monolithic(name, digest, body(request))
        pushes.pushed(name, digest, size)
        return _created(name, str(digest))
    upload_id = await pushes.uploads.start(name)
    return web.Response(status=202, headers=_session_headers(name, upload_id, 0))


async def status(request: web.Request) -> web.Response:
    name = _repo(request)
    upload = await request.app[PUSHES].uploads.get(name, request.match_info["upload_id"])
    return web.Response(status=204, headers=_session_headers(name, upload.id, upload.offset))


async def patch(request: web.Request) -> web.Response:
    name = _repo(request)
    upload_id = request.match_info["upload_id"]
    uploads = request.app[PUSHES].uploads
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
    name = _repo(request)
    upload_id = request.match_info["upload_id"]
    if "digest" not in request.query:
        raise OCIError(ErrorCode.DIGEST_INVALID, "digest query parameter is required")
    digest = Digest.parse(request.query["digest"])
    chunk = content_range(request)
    pushes = request.app[PUSHES]
    size = await pushes.uploads.finish(name, upload_id, digest, body(request), chunk)
    pushes.pushed(name, digest, size)
    return _created(name, str(digest))


async def cancel(request: web.Request) -> web.Response:
    name = _repo(request)
    await request.app[PUSHES].uploads.cancel(name, request.match_info["upload_id"])
    return web.Response(status=204)


def add_upload_routes(router: web.UrlDispatcher, name: str) -> None:
    """The upload routes, ``name`` being the route pattern of a repository name."""
    router.add_post(f"/v2/{name}/blobs/uploads/", start)
    router.add_patch(f"/v2/{name}/blobs/uploads/{{upload_id}}", patch)
    router.add_put(f"/v2/{name}/blobs/uploads/{{upload_id}}", put)
    router.add_get(f"/v2/{name}/blobs/uploads/{{upload_id}}", status)
    router.add_delete(f"/v2/{name}/blobs/uploads/{{upload_id}}", cancel)
    router.add_post(f"/v2/{name}/blobs/uploads", start)
