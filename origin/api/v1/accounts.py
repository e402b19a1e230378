"""Handlers: the caller's account and app tokens, and users (for system admins)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import json, number_param, text_param
from origin.keys import PEOPLE
from origin.metadata.access import Account, AppToken


def account_view(account: Account) -> schemas.Account:
    return schemas.Account(
        name=account.name,
        kind=account.kind,  # type: ignore[arg-type]
        admin=account.is_admin,
        provider=account.provider,
        email=account.email,
        disabled=account.disabled_at is not None,
        expires_at=account.expires_at,
        created_at=account.created_at,
    )


def _token_view(token: AppToken) -> schemas.AppToken:
    return schemas.AppToken(
        id=token.id,
        kind=token.kind,  # type: ignore[arg-type]
        label=token.name,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        expires_at=token.expires_at,
        revoked=token.revoked_at is not None,
    )


async def get_me(request: web.Request, caller: Caller, _: Any) -> web.Response:
    people = request.app[PEOPLE]
    found = await people.store.find_account(caller.name)
    assert found is not None
    return json(account_view(found))


async def list_app_tokens(request: web.Request, caller: Caller, _: Any) -> web.Response:
    return json([_token_view(t) for t in await request.app[PEOPLE].app_tokens(caller)])


async def create_app_token(
    request: web.Request, caller: Caller, body: schemas.AppTokenCreate
) -> web.Response:
    token_id, token = await request.app[PEOPLE].create_app_token(
        caller, body.label, body.expires_at
    )
    return json(schemas.AppTokenSecret(id=token_id, label=body.label, token=token), 201)


async def revoke_app_token(request: web.Request, caller: Caller, _: Any) -> web.Response:
    await request.app[PEOPLE].revoke_app_token(caller, int(request.match_info["token_id"]))
    return web.Response(status=204)


async def list_users(request: web.Request, caller: Caller, _: Any) -> web.Response:
    after = text_param(request, "after")
    limit = number_param(request, "limit", 100, 1, 1000)
    return json(
        [account_view(a) for a in await request.app[PEOPLE].list_users(caller, after, limit)]
    )


async def create_user(
    request: web.Request, caller: Caller, body: schemas.UserCreate
) -> web.Response:
    created = await request.app[PEOPLE].create_user(caller, body.name, body.password, body.admin)
    return json(account_view(created), 201)


async def get_user(request: web.Request, caller: Caller, _: Any) -> web.Response:
    return json(account_view(await request.app[PEOPLE].user(caller, request.match_info["user"])))


async def update_user(
    request: web.Request, caller: Caller, body: schemas.UserUpdate
) -> web.Response:
    updated = await request.app[PEOPLE].update_user(
        caller,
        request.match_info["user"],
        admin=body.admin,
        disabled=body.disabled,
        password=body.password,
        current_password=body.current_password,
    )
    return json(account_view(updated))
