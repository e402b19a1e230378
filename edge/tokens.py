"""Tokens from a registry's token endpoint (Docker token auth), for the edge's own accounts:
a mirror's credentials, the replicator. Each caller keeps what it got until it expires."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class Token:
    value: str
    good_until: float  # a little before it expires
    granted: frozenset[str]  # the scopes granted, as the endpoint said ("scope")

    @property
    def fresh(self) -> bool:
        return self.good_until > time.time()


class TokenRefused(Exception):
    """The endpoint answered, but not with a token (``status``)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the token endpoint answered {status}")
        self.status = status


async def ask_token(
    session: aiohttp.ClientSession,
    realm: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    username: str = "",
    password: str = "",
) -> Token:
    """A token from ``realm`` (Basic credentials when ``username`` is set); raises
    TokenRefused on any answer but 200, aiohttp/timeout errors when it cannot be asked."""
    headers = {"Authorization": aiohttp.encode_basic_auth(username, password)} if username else {}
    async with session.get(realm, params=params, headers=headers) as r:
        if r.status != 200:
            raise TokenRefused(r.status)
        body = await r.json(content_type=None)
    lifetime = float(body.get("expires_in") or 60)
    return Token(
        str(body.get("token") or body.get("access_token") or ""),
        time.time() + max(lifetime - 10, 1),
        frozenset(str(body.get("scope", "")).split()),
    )
