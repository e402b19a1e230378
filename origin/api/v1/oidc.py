"""Handlers: sign-in through the OpenID Provider (``[origin.oidc]``).

``/oidc/login`` sends the browser to the provider; the provider sends it back to
``/oidc/callback``, which provisions the user on first sign-in (a Wharf user like any other,
their groups syncing their teams) and answers with an API token and a refresh token.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ocicore.auth.scopes import Scope
from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import json
from origin.audit import AuditEvent
from origin.auth.accounts import ProviderConflict
from origin.auth.oidc import OidcError, OidcProvider
from origin.keys import OIDC, TOKENS

MAX_PARAM = 2048


def _provider(request: web.Request) -> OidcProvider:
    provider = request.app.get(OIDC)
    if provider is None:
        raise OCIError(ErrorCode.NOT_FOUND, "OIDC sign-in is not configured")
    return provider


async def oidc_login(request: web.Request, caller: Caller, _: Any) -> web.Response:
    try:
        url = await _provider(request).start()
    except OidcError as exc:
        raise OCIError(ErrorCode.UNAVAILABLE, str(exc)) from None
    raise web.HTTPFound(url, headers={"Cache-Control": "no-store"})


async def oidc_callback(request: web.Request, caller: Caller, _: Any) -> web.Response:
    provider = _provider(request)
    tokens = request.app[TOKENS]
    code, state = request.query.get("code", ""), request.query.get("state", "")
    if not code or not state or len(code) > MAX_PARAM or len(state) > MAX_PARAM:
        raise OCIError(ErrorCode.INVALID_REQUEST, "code and state are required")
    try:
        identity = await provider.complete(code, state)
        actor = await tokens.accounts.sign_in(identity)
    except (OidcError, ProviderConflict, ValueError) as exc:
        why = (
            "the name belongs to another account" if isinstance(exc, ProviderConflict) else str(exc)
        )
        tokens.audit.record(
            AuditEvent(
                "login", "failed", client=caller.client, detail={"method": "oidc", "why": why}
            )
        )
        raise OCIError(ErrorCode.UNAUTHORIZED, f"sign-in failed: {why}") from None
    tokens.audit.record(
        AuditEvent(
            "login",
            "ok" if actor else "denied",
            identity.name,
            client=caller.client,
            detail={"method": "oidc"},
        )
    )
    if actor is None:
        raise OCIError(ErrorCode.DENIED, "the account is disabled")
    api = [Scope("api", "v1", frozenset({"*"}))]
    token, expires_in = tokens.keys.issue(
        identity.name, api, tokens.issuer, tokens.service, tokens.ttl
    )
    refresh = await tokens.accounts.issue_refresh_token(actor, "oidc")
    return json(schemas.SignedIn(token=token, expires_in=expires_in, refresh_token=refresh))
