"""Handlers: the token signing keys (system admins)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import json
from origin.keys import PEOPLE, SIGNING_KEYS, VERIFIER


def _views(request: web.Request) -> list[schemas.SigningKey]:
    keys = request.app[SIGNING_KEYS]
    return [
        schemas.SigningKey(
            kid=key.kid, created_at=datetime.fromtimestamp(key.created, UTC), state=keys.state(key)
        )
        for key in keys.keys
    ]


async def list_signing_keys(request: web.Request, caller: Caller, _: Any) -> web.Response:
    request.app[PEOPLE].require_admin(caller, "key.list")
    return json(_views(request))


async def rotate_signing_key(
    request: web.Request, caller: Caller, body: schemas.KeyRotate
) -> web.Response:
    people = request.app[PEOPLE]
    people.require_admin(caller, "key.rotate")
    keys = request.app[SIGNING_KEYS]
    key = await keys.rotate(body.immediately)
    request.app[VERIFIER].set_keys(keys.public_keys())
    people.record(caller, "key.rotate", detail={"kid": key.kid, "immediately": body.immediately})
    return json(_views(request), 201)
