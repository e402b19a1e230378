"""Request parsing shared by the handlers: every client-controlled value is checked here."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ocicore.auth.enforce import GRANT
from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from ocicore.names import validate_name
from origin.audit import AuditEvent
from origin.keys import AUDIT

MAX_PAGE = 1000


def repo(request: web.Request) -> str:
    return validate_name(request.match_info["name"])


def digest_param(text: str) -> Digest:
    return Digest.parse(text)


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
    if grant is not None and grant.actor:
        detail = {**(detail or {}), "via": grant.actor}
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
