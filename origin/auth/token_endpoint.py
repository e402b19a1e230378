"""The Docker token endpoint: ``GET /auth/token?service=...&scope=...``.

Clients authenticate with HTTP Basic (a user's password) or come anonymously; every requested
scope is granted only as far as the policy allows (an empty ``actions`` list otherwise), as the
Docker token specification asks. A wrong password is a 401, never a silent downgrade.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from aiohttp import web

from ocicore.auth.scopes import InvalidScope, Scope, parse_scopes
from ocicore.errors import ErrorCode, OCIError
from origin.audit import AuditEvent, AuditLog
from origin.auth.accounts import AccountService
from origin.auth.policy import ANONYMOUS, Actor, allowed_actions
from origin.auth.signing import SigningKeys
from origin.auth.throttle import LoginThrottle

MAX_SCOPES = 32


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 4096:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


class TokenService:
    def __init__(
        self,
        accounts: AccountService,
        keys: SigningKeys,
        issuer: str,
        service: str,
        ttl: float,
        audit: AuditLog,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.audit = audit
        self.throttle = throttle or LoginThrottle()
        self.accounts = accounts
        self.keys = keys
        self.issuer = issuer
        self.service = service
        self.ttl = ttl

    async def grant(self, actor: Actor, requested: list[Scope]) -> list[Scope]:
        granted = []
        for scope in requested:
            if scope.type == "repository":
                facts = await self.accounts.store.repository_facts(actor.account_id, scope.name)
                allowed = allowed_actions(actor, facts)
                wanted = allowed if "*" in scope.actions else scope.actions
                granted.append(Scope(scope.type, scope.name, frozenset(wanted & allowed)))
            else:  # registry:catalog:* is for admins
                actions = scope.actions if actor.is_admin else frozenset()
                granted.append(Scope(scope.type, scope.name, actions))
        return granted

    async def handle(self, request: web.Request) -> web.Response:
        if request.query.get("service", self.service) != self.service:
            raise OCIError(ErrorCode.DENIED, "token asked for another service")
        try:
            requested = parse_scopes(request.query.getall("scope", []))
        except InvalidScope as exc:
            raise OCIError(ErrorCode.DENIED, str(exc)) from None
        if len(requested) > MAX_SCOPES:
            raise OCIError(ErrorCode.DENIED, f"at most {MAX_SCOPES} scopes per token")
        credentials = basic_credentials(request.headers.get("Authorization"))
        actor = ANONYMOUS
        if credentials is not None:
            address = request.remote or "unknown"
            if self.throttle.blocked(credentials[0], address):
                raise OCIError(
                    ErrorCode.TOOMANYREQUESTS,
                    "too many failed logins; try again later",
                    headers={"Retry-After": str(int(self.throttle.limits.window_seconds))},
                )
            found = await self.accounts.authenticate(*credentials)
            self.audit.record(
                AuditEvent(
                    "login", "ok" if found else "failed", credentials[0][:255], client=address
                )
            )
            if found is None:
                self.throttle.failed(credentials[0], address)
                raise OCIError(
                    ErrorCode.UNAUTHORIZED,
                    "invalid credentials",
                    headers={"WWW-Authenticate": f'Basic realm="{self.service}"'},
                )
            actor = found
        granted = await self.grant(actor, requested)
        self.audit.record(
            AuditEvent(
                "token",
                "ok",
                actor.name,
                client=request.remote,
                detail={"scopes": [str(g) for g in granted if g.actions]},
            )
        )
        token, expires_in = self.keys.issue(
            actor.name or "", granted, self.issuer, self.service, self.ttl
        )
        return web.json_response(
            {
                "token": token,
                "access_token": token,
                "expires_in": expires_in,
                "issued_at": datetime.now(UTC).isoformat(),
            },
            headers={"Cache-Control": "no-store"},
        )
