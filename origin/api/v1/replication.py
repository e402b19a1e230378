"""Handlers: replication rules (system admins) and the event feed (replicators, admins)."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from aiohttp import web

from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import Param, json
from origin.keys import CONFIG, PEOPLE, REPLICATION
from origin.replication import Rule

_REGION = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FEED = (
    Param(
        "region",
        "The region whose edges ask",
        {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9][a-z0-9._-]*$"},
        required=True,
    ),
    Param(
        "after",
        "The cursor: events after it",
        {"type": "integer", "minimum": 0, "maximum": 2**62},
    ),
    Param("limit", "Events at most", {"type": "integer", "minimum": 1, "maximum": 1000}),
    Param(
        "wait",
        "Seconds to wait for an event (the origin holds at most feed_max_wait_seconds)",
        {"type": "number", "minimum": 0, "maximum": 30},
    ),
)


def _view(rule: Rule) -> schemas.Rule:
    return schemas.Rule(**{**asdict(rule), "regions": list(rule.regions)})


async def list_rules(request: web.Request, caller: Caller, _: Any) -> web.Response:
    _require_replicator_or_admin(request, caller, "rule.list")
    return json([_view(rule) for rule in await request.app[REPLICATION].rules()])


async def create_rule(
    request: web.Request, caller: Caller, body: schemas.RuleCreate
) -> web.Response:
    people = request.app[PEOPLE]
    people.require_admin(caller, "rule.create")
    rule = await request.app[REPLICATION].add_rule(
        body.repositories, body.tags, list(body.regions), caller.name
    )
    people.record(caller, "rule.create", detail={"id": rule.id, **body.model_dump()})
    return json(_view(rule), 201)


async def delete_rule(request: web.Request, caller: Caller, _: Any) -> web.Response:
    people = request.app[PEOPLE]
    people.require_admin(caller, "rule.delete")
    text = request.match_info["rule_id"]
    if not text.isdigit() or len(text) > 9:
        raise OCIError(ErrorCode.NOT_FOUND, "no such rule")
    if not await request.app[REPLICATION].delete_rule(int(text)):
        raise OCIError(ErrorCode.NOT_FOUND, "no such rule")
    people.record(caller, "rule.delete", detail={"id": int(text)})
    return web.Response(status=204)


async def feed(request: web.Request, caller: Caller, _: Any) -> web.Response:
    _require_replicator_or_admin(request, caller, "feed.read")
    query = request.query
    region = query.get("region", "")
    if not _REGION.match(region):
        raise OCIError(ErrorCode.INVALID_REQUEST, "region: a region's name is required")
    after = _number(query.get("after", "0"), int, 0, 2**62, "after")
    limit = _number(query.get("limit", "100"), int, 1, 1000, "limit")
    wait = _number(query.get("wait", "0"), float, 0, 30, "wait")
    found, cursor = await request.app[REPLICATION].feed(region, int(after), int(limit), wait)
    page = schemas.FeedPage(
        events=[schemas.FeedEvent(**asdict(event)) for event in found], cursor=cursor
    )
    return json(page)


def _number(text: str, kind: type[int] | type[float], low: float, high: float, name: str) -> float:
    try:
        value = kind(text) if len(text) <= 32 else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise OCIError(ErrorCode.INVALID_REQUEST, f"{name}: a number from {low} to {high}")
    return value


def _require_replicator_or_admin(request: web.Request, caller: Caller, action: str) -> None:
    if caller.actor.name not in request.app[CONFIG].replicators:
        request.app[PEOPLE].require_admin(caller, action)
