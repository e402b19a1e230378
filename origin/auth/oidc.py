"""Sign-in through an OpenID Provider: authorization code flow with PKCE, nonce and state.

``start`` remembers a random state, nonce and PKCE verifier for one browser round trip (ten
minutes, single use; kept in memory, so a restart forgets sign-ins in progress). ``complete``
trades the code at the token endpoint and trusts the ID token only after checking its signature
against the provider's published keys and its issuer, audience, lifetime and nonce.

The login name comes from ``username_claim`` with no fallback to ``sub``: ``sub`` is usually
an opaque id, and silently naming some users by it would give one person two accounts the
day the claim appears. Point ``username_claim`` at a claim the provider's administrators
control: ``preferred_username`` is often editable by the user, who could then pick a name.

Every failure is an ``OidcError`` whose message is safe to show: no code, token or secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cachetools import TTLCache
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet, KeySetSerialization
from yarl import URL

from origin.auth.accounts import validate_account_name
from origin.auth.identity import ExternalIdentity

MAX_RESPONSE_BYTES = 1024 * 1024
STATE_TTL_SECONDS = 600.0
MAX_PENDING = 10_000
CLOCK_LEEWAY_SECONDS = 60
# Public-key algorithms only: "none" and HMAC (keyed with our own client secret) never.
_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)  # never in a log line
    redirect_url: str  # our callback, e.g. https://registry/api/v1/oidc/callback
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    username_claim: str = "preferred_username"  # no fallback to "sub": see the module doc
    groups_claim: str = "groups"
    timeout_seconds: float = 10.0


class OidcError(Exception):
    """The sign-in failed (bad or expired state, refused code, bad token, provider down)."""


@dataclass(frozen=True, slots=True)
class _Pending:
    nonce: str
    verifier: str


class OidcProvider:
    def __init__(
        self,
        config: OidcConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._pending: TTLCache[str, _Pending] = TTLCache(
            maxsize=MAX_PENDING, ttl=STATE_TTL_SECONDS, timer=clock
        )
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> str:
        """The provider's authorization URL to send the browser to."""
        metadata = await self._discover()
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        self._pending[state] = _Pending(nonce, verifier)
        return str(
            URL(metadata["authorization_endpoint"]).update_query(
                response_type="code",
                client_id=self.config.client_id,
                redirect_uri=self.config.redirect_url,
                scope=" ".join(self.config.scopes),
                state=state,
                nonce=nonce,
                code_challenge=str(create_s256_code_challenge(verifier)),
                code_challenge_method="S256",
            )
        )

    async def complete(self, code: str, state: str) -> ExternalIdentity:
        """Who the provider says signed in, from the callback's ``code`` and ``state``."""
        pending = self._pending.pop(state, None)  # single use, even when what follows fails
        if pending is None:
            raise OidcError("unknown or expired sign-in; please start again")
        metadata = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_url,
            "code_verifier": pending.verifier,
        }
        headers = {}
        methods = metadata.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        if "client_secret_basic" in methods:  # RFC 6749 2.3.1: form-encode, then Basic
            pair = f"{quote(self.config.client_id)}:{quote(self.config.client_secret)}"
            headers["Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
        elif "client_secret_post" in methods:
            form |= {"client_id": self.config.client_id, "client_secret": self.config.client_secret}
        else:
            raise OidcError("the identity provider offers no client authentication we support")
        tokens = await self._fetch("POST", metadata["token_endpoint"], data=form, headers=headers)
        if not isinstance(tokens.get("id_token"), str):
            raise OidcError("the identity provider returned no ID token")
        return self._identity(await self.verify_id_token(tokens["id_token"], pending.nonce))

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of an ID token issued to us for ``nonce``, once it is proven genuine."""
        claims = (await self._decode(id_token)).claims
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY_SECONDS,
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise OidcError(f"the ID token was refused: {exc.description}") from exc
        # Compared here, exactly: the registry would also accept a list containing the value.
        if claims["nonce"] != nonce:
            raise OidcError("the ID token was refused: its nonce is not this sign-in's")
        several = isinstance(claims["aud"], list) and len(claims["aud"]) > 1
        if claims.get("azp", None if several else self.config.client_id) != self.config.client_id:
            raise OidcError("the ID token was refused: its authorized party (azp) is not us")
        return claims

    async def _decode(self, id_token: str) -> jwt.Token:
        """The token, its signature checked against the provider's cached key set.

        The key set is fetched again once when the token names a key it lacks (or names none
        and does not verify): the provider has rotated its keys. In ``complete`` tokens come
        straight from the token endpoint, so a stranger cannot make us refetch at will."""
        metadata = await self._discover()
        offered = metadata.get("id_token_signing_alg_values_supported", ["RS256"])
        algorithms = sorted(_ALGORITHMS.intersection(offered if isinstance(offered, list) else []))
        for refetched in (False, True):
            if self._keys is None or refetched:
                self._keys = await self._fetch_keys(metadata["jwks_uri"])
            try:
                return jwt.decode(id_token, self._keys, algorithms=algorithms)
            except (InvalidKeyIdError, BadSignatureError) as exc:
                if refetched:
                    raise OidcError("the ID token's signature is not valid") from exc
            except (JoseError, ValueError) as exc:
                raise OidcError("the ID token is not a valid signed token") from exc
        raise AssertionError("unreachable")

    def _identity(self, claims: dict[str, Any]) -> ExternalIdentity:
        raw = claims.get(self.config.username_claim)
        if not isinstance(raw, str):
            raise OidcError(f"the ID token has no {self.config.username_claim!r} claim")
        try:
            name = validate_account_name(raw.lower())
        except ValueError as exc:
            raise OidcError(f"{raw[:80]!r} is not a valid Wharf account name") from exc
        groups = claims.get(self.config.groups_claim, [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise OidcError(f"the {self.config.groups_claim!r} claim is not a list of names")
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is False:
            email = None  # an address the provider says it has not checked is not one
        return ExternalIdentity("oidc", name, email, frozenset(groups))

    async def _discover(self) -> dict[str, Any]:
        async with self._lock:  # fetched once; a failure is not remembered
            if self._metadata is None:
                issuer = self.config.issuer.rstrip("/")
                found = await self._fetch("GET", f"{issuer}/.well-known/openid-configuration")
                if found.get("issuer") != self.config.issuer:
                    raise OidcError("the identity provider's discovery names another issuer")
                for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(found.get(field), str):
                        raise OidcError(f"the identity provider's discovery lacks {field}")
                self._metadata = found
            return self._metadata

    async def _fetch_keys(self, url: str) -> KeySet:
        try:
            return KeySet.import_key_set(cast("KeySetSerialization", await self._fetch("GET", url)))
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise OidcError("the identity provider's key set is not valid") from exc

    async def _fetch(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """A JSON object from the provider, read up to ``MAX_RESPONSE_BYTES``."""
        try:
            async with self._session.request(
                method, url, timeout=self._timeout, allow_redirects=False, **kwargs
            ) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise OidcError("the identity provider's answer is too large")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OidcError("the identity provider could not be reached") from exc
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if status != 200 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            detail = f" ({error})" if isinstance(error, str) and error.isidentifier() else ""
            raise OidcError(f"the identity provider answered {status}{detail}")
        return data
