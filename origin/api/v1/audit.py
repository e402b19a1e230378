"""Handlers: the audit log, a page at a time or whole as JSON lines (system admins only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import Param, json, number_param, text_param
from origin.keys import AUDIT, PEOPLE

FILTERS = (
    Param("actor", "Who acted (an account name)"),
    Param("repository", "Which repository"),
    Param("action", "push, pull, delete, login, token, user.create, team.member.add, ..."),
    Param("outcome", "ok, denied or failed"),
    Param("since", "From this time on (RFC 3339)", {"type": "string", "format": "date-time"}),
    Param("until", "Before this time (RFC 3339)", {"type": "string", "format": "date-time"}),
)
PAGING = (
    Param(
        "after",
        "The id of the last event of the previous page",
        {"type": "integer", "minimum": 0, "maximum": 2**62},
    ),
    Param(
        "limit", "Events per page (1 to 1000)", {"type": "integer", "minimum": 1, "maximum": 1000}
    ),
)


def _moment(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise OCIError(ErrorCode.INVALID_REQUEST, f"{name} must be an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filters(request: web.Request) -> dict[str, Any]:
    query = request.query
    filters: dict[str, Any] = {
        name: text_param(request, name)
        for name in ("actor", "repository", "action", "outcome")
        if name in query
    }
    filters["since"] = _moment(query.get("since"), "since")
    filters["until"] = _moment(query.get("until"), "until")
    return filters


async def query_audit(request: web.Request, caller: Caller, _: Any) -> web.Response:
    request.app[PEOPLE].require_admin(caller, "audit.read")
    limit = number_param(request, "limit", 100, 1, 1000)
    after = number_param(request, "after", 0, 0, 2**62)
    events = await request.app[AUDIT].query(**_filters(request), after_id=after, limit=limit)
    page = [schemas.AuditEvent(**event) for event in events]
    next_after = page[-1].id if len(page) == limit else None
    return json(schemas.AuditPage(events=page, next_after=next_after))


async def export_audit(request: web.Request, caller: Caller, _: Any) -> web.StreamResponse:
    request.app[PEOPLE].require_admin(caller, "audit.export")
    filters = _filters(request)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    async for event in request.app[AUDIT].export(**filters):
        await response.write(orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS) + b"\n")
    await response.write_eof()
    return response
