"""Handlers: a namespace's webhooks, their delivery logs and test deliveries."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import json
from origin.keys import WEBHOOK_ADMIN
from origin.metadata.webhooks import Delivery, Hook


def _hook(hook: Hook) -> schemas.Webhook:
    return schemas.Webhook(
        id=hook.id,
        namespace=hook.namespace,
        url=hook.url,
        events=hook.events,
        created_by=hook.created_by,
        created_at=hook.created_at,
    )


def _delivery(d: Delivery) -> schemas.WebhookDelivery:
    return schemas.WebhookDelivery(
        id=d.id,
        event=d.event,
        state=d.state,  # type: ignore[arg-type]
        attempts=d.attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=d.created_at,
        finished_at=d.finished_at,
        payload=d.payload,
    )


def _hook_id(request: web.Request) -> int:
    text = request.match_info["hook_id"]
    if not text.isdigit() or len(text) > 9:
        raise OCIError(ErrorCode.NOT_FOUND, "no such webhook")
    return int(text)


async def list_webhooks(request: web.Request, caller: Caller, _: Any) -> web.Response:
    hooks = await request.app[WEBHOOK_ADMIN].of(caller, request.match_info["namespace"])
    return json([_hook(h) for h in hooks])


async def add_webhook(
    request: web.Request, caller: Caller, body: schemas.WebhookCreate
) -> web.Response:
    hook, secret = await request.app[WEBHOOK_ADMIN].add(
        caller, request.match_info["namespace"], body.url, body.events
    )
    return json(schemas.WebhookCreated(**_hook(hook).model_dump(), secret=secret), 201)


async def remove_webhook(request: web.Request, caller: Caller, _: Any) -> web.Response:
    await request.app[WEBHOOK_ADMIN].remove(
        caller, request.match_info["namespace"], _hook_id(request)
    )
    return web.Response(status=204)


async def list_deliveries(request: web.Request, caller: Caller, _: Any) -> web.Response:
    found = await request.app[WEBHOOK_ADMIN].deliveries(
        caller, request.match_info["namespace"], _hook_id(request)
    )
    return json([_delivery(d) for d in found])


async def ping_webhook(request: web.Request, caller: Caller, _: Any) -> web.Response:
    delivery = await request.app[WEBHOOK_ADMIN].test(
        caller, request.match_info["namespace"], _hook_id(request)
    )
    return json(_delivery(delivery))
