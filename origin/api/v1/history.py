"""Handlers: the time machine (a tag's history, restoring, expiring) and its window."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import json
from origin.keys import QUOTAS, TAG_RULES, TIME_MACHINE


async def tag_history(request: web.Request, caller: Caller, _: Any) -> web.Response:
    info = request.match_info
    states, since = await request.app[TIME_MACHINE].states(caller, info["repository"], info["tag"])
    return json(
        schemas.TagHistory(
            repository=info["repository"],
            tag=info["tag"],
            window_start=since,
            states=[
                schemas.TagState(
                    digest=s.digest,
                    started_at=s.started_at,
                    ended_at=s.ended_at,
                    restorable=s.held and (s.ended_at is None or s.ended_at >= since),
                )
                for s in states
            ],
        )
    )


async def restore_tag(
    request: web.Request, caller: Caller, body: schemas.TagRestore
) -> web.Response:
    info = request.match_info
    previous = await request.app[TIME_MACHINE].restore(
        caller, info["repository"], info["tag"], Digest.parse(body.digest)
    )
    return json(
        schemas.TagRestored(
            repository=info["repository"], tag=info["tag"], digest=body.digest, previous=previous
        )
    )


async def expire_history(request: web.Request, caller: Caller, _: Any) -> web.Response:
    info = request.match_info
    forgotten = await request.app[TIME_MACHINE].expire(caller, info["repository"], info["tag"])
    return json(schemas.HistoryExpired(forgotten=forgotten))


async def get_window(request: web.Request, caller: Caller, _: Any) -> web.Response:
    namespace = request.match_info["namespace"]
    machine = request.app[TIME_MACHINE]
    await machine.require_manager(caller, await machine.namespace(namespace), "namespace.read")
    return json(
        schemas.TimeMachineWindow(namespace=namespace, seconds=await machine.window(namespace))
    )


async def set_window(
    request: web.Request, caller: Caller, body: schemas.TimeMachineSet
) -> web.Response:
    namespace = request.match_info["namespace"]
    wanted = None if body.seconds is None else int(body.seconds)
    seconds = await request.app[TIME_MACHINE].set_window(caller, namespace, wanted)
    return json(schemas.TimeMachineWindow(namespace=namespace, seconds=seconds))


def _rule(rule: Any) -> schemas.ImmutableRule:
    return schemas.ImmutableRule(
        id=rule.id,
        namespace=rule.namespace,
        repository=rule.repository,
        pattern=rule.pattern,
        created_by=rule.created_by,
        created_at=rule.created_at,
    )


async def list_immutable(request: web.Request, caller: Caller, _: Any) -> web.Response:
    rules = await request.app[TAG_RULES].of(caller, request.match_info["namespace"])
    return json([_rule(rule) for rule in rules])


async def add_immutable(
    request: web.Request, caller: Caller, body: schemas.ImmutableRuleCreate
) -> web.Response:
    rule = await request.app[TAG_RULES].add(
        caller, request.match_info["namespace"], body.pattern, body.repository
    )
    return json(_rule(rule), 201)


async def remove_immutable(request: web.Request, caller: Caller, _: Any) -> web.Response:
    text = request.match_info["rule_id"]
    if not text.isdigit() or len(text) > 9:
        raise OCIError(ErrorCode.NOT_FOUND, "no such rule")
    await request.app[TAG_RULES].remove(caller, request.match_info["namespace"], int(text))
    return web.Response(status=204)


async def _quota(request: web.Request, caller: Caller) -> web.Response:
    namespace = request.match_info["namespace"]
    quota, used = await request.app[QUOTAS].get(caller, namespace)
    return json(schemas.Quota(namespace=namespace, quota_bytes=quota, used_bytes=used))


async def get_quota(request: web.Request, caller: Caller, _: Any) -> web.Response:
    return await _quota(request, caller)


async def set_quota(request: web.Request, caller: Caller, body: schemas.QuotaSet) -> web.Response:
    wanted = None if body.quota_bytes is None else int(body.quota_bytes)
    await request.app[QUOTAS].set(caller, request.match_info["namespace"], wanted)
    return await _quota(request, caller)
