"""The Docker token endpoint: ``GET /auth/token?service=...&scope=...`` and its OAuth2 form,
``POST /auth/token`` with ``grant_type=password`` or ``grant_type=refresh_token``.

Clients authenticate with HTTP Basic (a password, app token or robot secret), with a refresh
token, or come anonymously; every requested scope is granted only as far as the policy allows
(an empty ``actions`` list otherwise), as the Docker token specification asks. A wrong password
is a 401, never a silent downgrade. ``offline_token=true`` (GET) or ``access_type=offline``
(POST) also returns a refresh token, which Docker clients keep instead of the password.

An account named in the origin's ``replicators`` (an edge's) may add ``act_as=<account>``: the
token is then that account's, granted what that account may do now, with an ``act`` claim
naming the replicator, so what an edge carries to the origin is authorized and audited as the
user who pushed it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from urllib.parse import parse_qs

from aiohttp import web

from ocicore.auth.scopes import InvalidScope, Scope, parse_scopes
from ocicore.errors import ErrorCode, OCIError
from origin.audit import AuditEvent, AuditLog
from origin.auth.accounts import AccountService
from origin.auth.ldap import LdapUnavailable
from origin.auth.policy import ANONYMOUS, Actor, allowed_actions
from origin.auth.signing import SigningKeys
from origin.auth.throttle import LoginThrottle

MAX_SCOPES = 32
MAX_FORM_BYTES = 16 * 1024


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
        throttle: LoginThrottle,
        replicators: frozenset[str] = frozenset(),
    ) -> None:
        self.replicators = replicators
        self.audit = audit
        self.throttle = throttle
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
                if facts.exists and actor.name is not None and actor.name in self.replicators:
                    allowed |= {"pull"}  # an edge's account prefetches what rules name
                wanted = allowed if "*" in scope.actions else scope.actions
                granted.append(Scope(scope.type, scope.name, frozenset(wanted & allowed)))
            elif scope.type == "api":  # the admin API, as oneself: any signed-in account
                actions = frozenset() if actor.anonymous else scope.actions
                granted.append(Scope(scope.type, scope.name, actions))
            else:  # registry:catalog:* is for admins
                actions = scope.actions if actor.is_admin else frozenset()
                granted.append(Scope(scope.type, scope.name, actions))
        return granted

    async def login(self, request: web.Request, name: str, password: str) -> Actor:
        """The actor for a name and secret, throttled and audited; 401 when wrong."""
        address = request.remote or "unknown"
        if await self.throttle.blocked(name, address):
            raise OCIError(
                ErrorCode.TOOMANYREQUESTS,
                "too many failed logins; try again later",
                headers={"Retry-After": str(int(self.throttle.limits.window_seconds))},
            )
        try:
            found = await self.accounts.authenticate(name, password)
        except LdapUnavailable:
            self.audit.record(
                AuditEvent("login", "failed", name[:255], client=address, detail={"ldap": "down"})
            )
            raise OCIError(
                ErrorCode.UNAVAILABLE, "the directory is unreachable; try again later"
            ) from None
        self.audit.record(
            AuditEvent("login", "ok" if found else "failed", name[:255], client=address)
        )
        if found is None:
            await self.throttle.failed(name, address)
            raise OCIError(
                ErrorCode.UNAUTHORIZED,
                "invalid credentials",
                headers={"WWW-Authenticate": f'Basic realm="{self.service}"'},
            )
        return found

    async def _refresh(self, request: web.Request, token: str) -> Actor:
        address = request.remote or "unknown"
        if await self.throttle.blocked("", address):
            raise OCIError(ErrorCode.TOOMANYREQUESTS, "too many failed logins; try again later")
        actor = await self.accounts.refresh(token)
        self.audit.record(
            AuditEvent(
                "login",
                "ok" if actor else "failed",
                actor.name if actor else None,
                client=address,
                detail={"method": "refresh_token"},
            )
        )
        if actor is None:
            await self.throttle.failed("", address)
            raise OCIError(ErrorCode.UNAUTHORIZED, "invalid or revoked refresh token")
        return actor

    def _scopes(self, values: list[str]) -> list[Scope]:
        try:
            requested = parse_scopes(values)
        except InvalidScope as exc:
            raise OCIError(ErrorCode.DENIED, str(exc)) from None
        if len(requested) > MAX_SCOPES:
            raise OCIError(ErrorCode.DENIED, f"at most {MAX_SCOPES} scopes per token")
        return requested

    def _check_service(self, service: str | None) -> None:
        if service is not None and service != self.service:
            raise OCIError(ErrorCode.DENIED, "token asked for another service")

    async def handle(self, request: web.Request) -> web.Response:
        """``GET``: Basic credentials or anonymous, as Docker's token specification has it."""
        self._check_service(request.query.get("service"))
        requested = self._scopes(request.query.getall("scope", []))
        credentials = basic_credentials(request.headers.get("Authorization"))
        actor = ANONYMOUS if credentials is None else await self.login(request, *credentials)
        offline = request.query.get("offline_token", "").lower() == "true"
        client_id = request.query.get("client_id", "unknown client")
        act_as = request.query.get("act_as")
        if act_as is not None:  # pulls and pushes of repositories, nothing else
            carried = [
                Scope(s.type, s.name, s.actions & {"pull", "push"})
                for s in requested
                if s.type == "repository"
            ]
            return await self.respond(
                request, await self._stand_in(actor, act_as), carried, False, client_id, actor
            )
        return await self.respond(request, actor, requested, offline, client_id)

    async def _stand_in(self, replicator: Actor, name: str) -> Actor:
        """The account a replicator acts for (403 unless it is one, 404-free: DENIED)."""
        if replicator.name is None or replicator.name not in self.replicators:
            self.audit.record(
                AuditEvent("token", "denied", replicator.name, detail={"act_as": name[:255]})
            )
            raise OCIError(ErrorCode.DENIED, "this account may not act for others")
        target = await self.accounts.usable_actor(name[:255])
        if target is None:
            raise OCIError(ErrorCode.DENIED, "no such usable account to act for")
        return target

    async def handle_form(self, request: web.Request) -> web.Response:
        """``POST``: the OAuth2 form (``grant_type`` password or refresh_token)."""
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            raise OCIError(ErrorCode.DENIED, "form too large", status=413)
        raw = await request.content.read(MAX_FORM_BYTES + 1)
        if len(raw) > MAX_FORM_BYTES:
            raise OCIError(ErrorCode.DENIED, "form too large", status=413)
        try:
            form = parse_qs(raw.decode(), max_num_fields=64, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise OCIError(ErrorCode.DENIED, "malformed form") from None

        def field(name: str) -> str | None:
            values = form.get(name)
            return values[0] if values else None

        self._check_service(field("service"))
        requested = self._scopes(form.get("scope", []))
        client_id = field("client_id")
        if not client_id:
            raise OCIError(ErrorCode.DENIED, "client_id is required")
        grant_type = field("grant_type")
        if grant_type == "password":
            name, password = field("username"), field("password")
            if not name or password is None:
                raise OCIError(ErrorCode.DENIED, "username and password are required")
            actor = await self.login(request, name, password)
        elif grant_type == "refresh_token":
            actor = await self._refresh(request, field("refresh_token") or "")
        else:
            raise OCIError(ErrorCode.DENIED, "grant_type must be password or refresh_token")
        offline = field("access_type") == "offline"
        return await self.respond(request, actor, requested, offline, client_id)

    async def respond(
        self,
        request: web.Request,
        actor: Actor,
        requested: list[Scope],
        offline: bool,
        client_id: str,
        via: Actor | None = None,
    ) -> web.Response:
        granted = await self.grant(actor, requested)
        detail: dict[str, object] = {"scopes": [str(g) for g in granted if g.actions]}
        if via is not None:
            detail["via"] = via.name
        self.audit.record(
            AuditEvent("token", "ok", actor.name, client=request.remote, detail=detail)
        )
        token, expires_in = self.keys.issue(
            actor.name or "",
            granted,
            self.issuer,
            self.service,
            self.ttl,
            {"act": {"sub": via.name}} if via is not None else None,
        )
        body: dict[str, object] = {
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": datetime.now(UTC).isoformat(),
            "scope": " ".join(str(g) for g in granted if g.actions),
        }
        if offline and not actor.anonymous:
            body["refresh_token"] = await self.accounts.issue_refresh_token(actor, client_id)
        return web.json_response(body, headers={"Cache-Control": "no-store"})
