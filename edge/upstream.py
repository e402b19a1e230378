"""Where an edge fetches what it lacks: the origin, or a mirrored registry, by namespace.

For the origin the client's own bearer token goes along (the origin decides, as it would for
a direct pull). A mirror gets the edge's own credentials from the config through the usual
bearer-challenge flow (a token per scope, kept until it expires); they never reach a log.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from edge.config import EdgeConfig, Mirror
from edge.tokens import TokenRefused, ask_token

_CHALLENGE_PARAM = r'(\w+)="([^"]*)"'


class Unreachable(Exception):
    """The upstream could not be asked (refused, timed out, or answered 5xx)."""


@dataclass(frozen=True)
class Route:
    upstream: Upstream
    name: str  # the repository's name at the upstream


class Upstream:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        mirror: Mirror | None = None,
        name: str = "",
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.mirror = mirror
        self.name = name
        self._tokens: dict[str, tuple[str, float]] = {}

    @property
    def label(self) -> str:
        return self.name or (self.mirror.namespace if self.mirror else "origin")

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        client_auth: str | None,
        headers: Mapping[str, str] | None = None,
        scope: str | None = None,
        deadlines: aiohttp.ClientTimeout | None = None,
        data: Any = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A response from the upstream (5xx and connection failures raise Unreachable)."""
        sent = dict(headers or {})
        if self.mirror is None:
            if client_auth:
                sent["Authorization"] = client_auth
        elif scope is not None and scope in self._tokens and self._tokens[scope][1] > time.time():
            sent["Authorization"] = f"Bearer {self._tokens[scope][0]}"
        limits = deadlines or self.session.timeout
        try:
            response = await self.session.request(
                method, self.base_url + path, headers=sent, timeout=limits, data=data
            )
            if response.status == 401 and self.mirror is not None and scope is not None:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.release()
                token = await self._token(challenge, scope)
                sent["Authorization"] = f"Bearer {token}"
                response = await self.session.request(
                    method, self.base_url + path, headers=sent, timeout=limits
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"{self.label}: {type(exc).__name__}") from None
        try:
            if response.status >= 500:
                raise Unreachable(f"{self.label} answered {response.status}")
            yield response
        finally:
            response.release()

    async def _token(self, challenge: str, scope: str) -> str:
        """A token from the mirror's token service, for its bearer challenge."""
        assert self.mirror is not None
        scheme, _, rest = challenge.partition(" ")
        params = dict(re.findall(_CHALLENGE_PARAM, rest))
        if scheme.lower() != "bearer" or "realm" not in params:
            raise Unreachable(f"{self.label}: no bearer challenge to follow")
        query = {"scope": scope}
        if "service" in params:
            query["service"] = params["service"]
        try:
            token = await ask_token(
                self.session, params["realm"], query, self.mirror.username, self.mirror.password
            )
        except TokenRefused as exc:
            raise Unreachable(f"{self.label}: {exc}") from None
        self._tokens[scope] = (token.value, token.good_until)
        return token.value


class Upstreams:
    """The origin, and the mirrors by namespace."""

    def __init__(self, session: aiohttp.ClientSession, config: EdgeConfig) -> None:
        self.origin = Upstream(session, config.origin)
        self.mirrors = {m.namespace: Upstream(session, m.url, m) for m in config.mirrors}

    def route(self, name: str, ns: str | None = None) -> Route:
        """Which upstream serves repository ``name`` (``ns``: containerd's ``?ns=`` hint)."""
        if ns is not None and ns in self.mirrors:
            return Route(self.mirrors[ns], name)
        first, _, rest = name.partition("/")
        if rest and first in self.mirrors:
            return Route(self.mirrors[first], rest)
        return Route(self.origin, name)
