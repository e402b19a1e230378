"""Bearer tokens: verified once per token (signature, issuer, audience, lifetime), then cached.

A verified token becomes a :class:`Grant`; handlers ask the grant, not the token. Signature
checks cost tens of microseconds, so a token's grant is kept until the token expires; a key set
change (rotation, revocation of a key) drops every cached grant.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cachetools import LRUCache

ALGORITHMS = ("ES256", "RS256")
MAX_TOKEN_LENGTH = 8192


class TokenError(Exception):
    """A token that must not be honoured; the message says why (never the token)."""


@dataclass(frozen=True, slots=True)
class Grant:
    subject: str
    access: Mapping[tuple[str, str], frozenset[str]]
    expires_at: float
    actor: str = ""  # who acts for the subject (an edge's replicator: RFC 8693 ``act``)

    def allows(self, kind: str, name: str, action: str) -> bool:
        actions = self.access.get((kind, name), frozenset())
        return action in actions or "*" in actions


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


def _access(claim: Any) -> dict[tuple[str, str], frozenset[str]]:
    if not isinstance(claim, list):
        raise TokenError("access claim must be a list")
    access: dict[tuple[str, str], frozenset[str]] = {}
    for entry in claim:
        if not isinstance(entry, dict):
            raise TokenError("access entries must be objects")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise TokenError("access entries need type, name and actions")
        if not all(isinstance(a, str) for a in actions):
            raise TokenError("actions must be strings")
        key = (kind, name)
        access[key] = access.get(key, frozenset()) | frozenset(actions)
    return access


class TokenVerifier:
    def __init__(
        self,
        keys: Mapping[str, Any],
        issuer: str,
        audience: str,
        leeway: float = 5.0,
        cache_entries: int = 10_000,
    ) -> None:
        """``keys`` maps key ids to public keys (``cryptography`` objects or PyJWK keys)."""
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._keys = dict(keys)
        self._grants: LRUCache[str, Grant] = LRUCache(cache_entries)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any], issuer: str, audience: str) -> TokenVerifier:
        return cls(public_keys(jwks), issuer, audience)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def set_keys(self, keys: Mapping[str, Any]) -> None:
        """New verification keys (a rotation); grants verified with the old set are dropped."""
        self._keys = dict(keys)
        self._grants.clear()

    def verify(self, token: str) -> Grant:
        grant = self._grants.get(token)
        if grant is None:
            grant = self._verify(token)
            self._grants[token] = grant
        if time.time() > grant.expires_at + self.leeway:
            self._grants.pop(token, None)
            raise TokenError("token expired")
        return grant

    def _verify(self, token: str) -> Grant:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise TokenError("token signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("token from another issuer") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {type(exc).__name__}") from None
        act = claims.get("act")
        actor = str(act.get("sub", "")) if isinstance(act, dict) else ""
        return Grant(
            str(claims["sub"]), _access(claims.get("access", [])), float(claims["exp"]), actor
        )


def public_keys(jwks: Mapping[str, Any]) -> dict[str, Any]:
    """Key id -> public key, from a JWKS document."""
    keys = {}
    for jwk in jwt.PyJWKSet.from_dict(dict(jwks)).keys:
        if jwk.key_id:
            keys[jwk.key_id] = jwk.key
    return keys
