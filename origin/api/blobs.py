"""``/v2/<name>/blobs/<digest>``: GET and HEAD (with Range), DELETE.

A blob on the filesystem goes out by sendfile; one in an object store is streamed through
(ranged reads), or the client is redirected to a pre-signed URL when the location says so.
"""

from __future__ import annotations

from aiohttp import web

from ocicore.errors import ErrorCode, OCIError
from ocicore.storage.driver import NotFound
from ocicore.web.sendfile import BlobFileResponse
from origin.api.common import audit, digest_param, repo
from origin.keys import BLOBS, SENDFILE
from origin.registry.blobs import BlobInfo

PRESIGNED_SECONDS = 900.0


def _range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The requested (start, end-exclusive) range, None for all; 416 when unsatisfiable."""
    if "Range" not in request.headers:
        return None
    try:
        wanted = request.http_range
    except ValueError:
        return None  # a malformed Range is ignored (RFC 9110 14.2)
    start, stop = wanted.start, wanted.stop
    if start is None and stop is None:
        return None
    if request.headers["Range"].replace(" ", "") == "bytes=-0":  # a suffix of nothing
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    if start is not None and start < 0:  # a suffix: the last -start bytes
        start, stop = max(size + start, 0), size

    start = start or 0
    stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, stop


def _lost(info: BlobInfo) -> OCIError:
    """The database says the blob is here, its location says it is not: an operator's (or a
    storage's) accident, not the client's; 503 so that clients try again (another replica's
    location may have it)."""
    return OCIError(ErrorCode.BLOB_UNKNOWN, str(info.digest), status=503)


async def _stream(
    request: web.Request, info: BlobInfo, headers: dict[str, str]
) -> web.StreamResponse:
    wanted = _range(request, info.size)
    start, stop = wanted or (0, info.size)
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    if wanted:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{info.size}"
    response.content_length = stop - start
    chunks = aiter(info.store.read(info.digest, start, stop - start))
    try:
        first = await anext(chunks, b"")  # a location that lost the bytes fails before 200
    except NotFound:
        raise _lost(info) from None
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


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
        await request.app[BLOBS].asked(name, digest)
        # No need to open the file (FileResponse would, in a thread) to say how big it is.
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Length"] = str(info.size)
        return web.Response(headers=headers)
    if "Range" not in request.headers:
        try:
            data = await request.app[BLOBS].small_content(info)
        except NotFound:
            raise _lost(info) from None
        if data is not None:
            return web.Response(body=data, headers=headers)
    else:
        _range(request, info.size)  # 416 for what no location can satisfy, the same everywhere
    path = info.store.local_path(digest)
    if path is not None:
        return BlobFileResponse(path, request.app[SENDFILE], headers=headers)
    url = await info.store.presign(digest, PRESIGNED_SECONDS)
    if url is not None:
        raise web.HTTPTemporaryRedirect(url, headers={"Docker-Content-Digest": str(digest)})
    return await _stream(request, info, headers)


async def delete(request: web.Request) -> web.Response:
    name = repo(request)
    digest = digest_param(request.match_info["digest"])
    await request.app[BLOBS].delete(name, digest)
    audit(request, "delete", name, str(digest))
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})
