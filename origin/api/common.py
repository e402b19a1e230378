"""Request parsing shared by the handlers: every client-controlled value is checked here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ocicore.auth.enforce import GRANT
from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.names import validate_name
from ocicore.web.middleware import BYTES_IN
from origin.audit import AuditEvent
from origin.keys import AUDIT
from origin.registry.uploads import ChunkRange

MAX_PAGE = 1000
_CONTENT_RANGE = re.compile(r"^(?:bytes )?(\d{1,19})-(\d{1,19})$")


def repo(request: web.Request) -> str:
    return validate_name(request.match_info["name"])


def digest_param(text: str) -> Digest:
    return Digest.parse(text)


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


def page(request: web.Request) -> tuple[int, str | None]:
    """``n`` and ``last`` of a paginated listing."""
    n_text = request.query.get("n")
    if n_text is None:
        n = MAX_PAGE
    elif not n_text.isdigit() or len(n_text) > 9:
        raise OCIError(ErrorCode.PAGINATION_NUMBER_INVALID, f"n={n_text[:20]!r}")
    else:
        n = min(int(n_text), MAX_PAGE)
    last = request.query.get("last")
    if last is not None and len(last) > 255:
        raise OCIError(ErrorCode.PAGINATION_NUMBER_INVALID, "last is too long")
    return n, last


def next_link(path: str, items: list[str], n: int) -> dict[str, str]:
    """A ``Link`` header to the next page when this one may not be the last."""
    if n == 0 or len(items) < n:
        return {}
    return {"Link": f'<{path}?n={n}&last={items[-1]}>; rel="next"'}


def audit(
    request: web.Request,
    action: str,
    repository: str,
    reference: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record a successful registry action by the request's token holder."""
    grant = request.get(GRANT)
    request.app[AUDIT].record(
        AuditEvent(
            action,
            "ok",
            (grant.subject or None) if grant is not None else None,
            repository,
            reference,
            request.remote,
            detail,
        )
    )
