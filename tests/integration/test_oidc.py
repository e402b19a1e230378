"""OIDC sign-in against a real OpenID Provider (oidc-provider-mock), over HTTP end to end."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpServer
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from yarl import URL

from origin.auth.identity import ExternalIdentity
from origin.auth.oidc import MAX_RESPONSE_BYTES, OidcConfig, OidcError, OidcProvider
from tests.oidc_idp import IDP_WARNINGS, MockIdp, running_idp

pytestmark = IDP_WARNINGS

CALLBACK = "https://registry.test/api/v1/oidc/callback"


@pytest.fixture
def idp() -> Iterator[MockIdp]:
    with running_idp() as idp:
        yield idp


@pytest.fixture
def config(idp: MockIdp) -> OidcConfig:
    client_id, secret = idp.register_client(CALLBACK)
    return OidcConfig(idp.issuer, client_id, secret, CALLBACK)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # No keep-alive: a stopped provider must look down, not go on serving a pooled connection.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


@pytest.fixture
def provider(config: OidcConfig, session: aiohttp.ClientSession) -> OidcProvider:
    return OidcProvider(config, session)


async def browse(idp: MockIdp, provider: OidcProvider, sub: str) -> tuple[str, str]:
    """Start a sign-in and authorize it as ``sub``: the callback's code and state."""
    callback = idp.sign_in(await provider.start(), sub)
    assert callback.with_query(None) == URL(CALLBACK)
    return callback.query["code"], callback.query["state"]


async def test_sign_in_returns_the_identity(idp: MockIdp, provider: OidcProvider) -> None:
    claims = {"preferred_username": "Alice", "email": "alice@example.com", "groups": ["dev", "ops"]}
    idp.set_user("u-1", claims)
    authorize = URL(await provider.start())
    assert authorize.query["code_challenge_method"] == "S256"
    assert {"state", "nonce", "code_challenge"} <= authorize.query.keys()
    callback = idp.sign_in(str(authorize), "u-1")
    assert callback.query["state"] == authorize.query["state"]

    identity = await provider.complete(callback.query["code"], callback.query["state"])

    assert identity == ExternalIdentity(
        "oidc", "alice", "alice@example.com", frozenset({"dev", "ops"})
    )


async def test_unverified_email_and_absent_groups(idp: MockIdp, provider: OidcProvider) -> None:
    idp.set_user("u-2", {"preferred_username": "bob", "email": "b@x.test", "email_verified": False})
    identity = await provider.complete(*await browse(idp, provider, "u-2"))
    assert identity == ExternalIdentity("oidc", "bob", None, frozenset())


async def test_state_is_single_use(idp: MockIdp, provider: OidcProvider) -> None:
    idp.set_user("u-1", {"preferred_username": "alice"})
    code, state = await browse(idp, provider, "u-1")
    await provider.complete(code, state)
    with pytest.raises(OidcError, match="unknown or expired"):
        await provider.complete(code, state)


async def test_unknown_state_is_refused(idp: MockIdp, provider: OidcProvider) -> None:
    idp.set_user("u-1", {"preferred_username": "alice"})
    code, _ = await browse(idp, provider, "u-1")
    with pytest.raises(OidcError, match="unknown or expired"):
        await provider.complete(code, "made-up-state")


async def test_expired_state_is_refused(
    idp: MockIdp, config: OidcConfig, session: aiohttp.ClientSession
) -> None:
    now = [time.monotonic()]
    provider = OidcProvider(config, session, clock=lambda: now[0])
    idp.set_user("u-1", {"preferred_username": "alice"})
    code, state = await browse(idp, provider, "u-1")
    now[0] += 11 * 60
    with pytest.raises(OidcError, match="unknown or expired"):
        await provider.complete(code, state)


async def test_token_with_another_nonce_is_refused(idp: MockIdp, provider: OidcProvider) -> None:
    # An attacker's authorization (their nonce) replayed into our sign-in (our state).
    idp.set_user("u-1", {"preferred_username": "alice"})
    authorize = URL(await provider.start())
    forged = authorize.update_query(nonce="the-attackers-nonce")
    callback = idp.sign_in(str(forged), "u-1")
    with pytest.raises(OidcError, match="nonce"):
        await provider.complete(callback.query["code"], callback.query["state"])


async def test_token_for_another_client_is_refused(idp: MockIdp, provider: OidcProvider) -> None:
    # Genuinely signed by the provider, but issued to another client (aud): not for us.
    idp.set_user("u-1", {"preferred_username": "alice"})
    other = idp.register_client(CALLBACK)
    token = idp.id_token(other, CALLBACK, "u-1", nonce="n-1")
    with pytest.raises(OidcError, match="aud"):
        await provider.verify_id_token(token, "n-1")


@pytest.mark.parametrize("kid", [None, "not-in-the-jwks"])
async def test_token_signed_with_another_key_is_refused(
    config: OidcConfig, provider: OidcProvider, kid: str | None
) -> None:
    key = _key("forged")
    header = {"alg": "RS256"} | ({"kid": kid} if kid else {})
    token = jwt.encode(header, _claims(config, "n-1"), key)
    with pytest.raises(OidcError, match="signature"):
        await provider.verify_id_token(token, "n-1")


async def test_token_signed_with_the_client_secret_is_refused(
    config: OidcConfig, provider: OidcProvider
) -> None:
    # HS256 keyed with our own secret: anyone holding the secret could mint one.
    key = OctKey.import_key(config.client_secret.encode())
    token = jwt.encode({"alg": "HS256"}, _claims(config, "n-1"), key, algorithms=["HS256"])
    with pytest.raises(OidcError, match="not a valid signed token"):
        await provider.verify_id_token(token, "n-1")


async def test_expired_id_token_is_refused(session: aiohttp.ClientSession) -> None:
    with running_idp(token_max_age=timedelta(minutes=-5)) as idp:
        client_id, secret = idp.register_client(CALLBACK)
        provider = OidcProvider(OidcConfig(idp.issuer, client_id, secret, CALLBACK), session)
        idp.set_user("u-1", {"preferred_username": "alice"})
        code, state = await browse(idp, provider, "u-1")
        with pytest.raises(OidcError, match="expired"):
            await provider.complete(code, state)


async def test_wrong_client_secret_is_refused(
    idp: MockIdp, config: OidcConfig, session: aiohttp.ClientSession
) -> None:
    secret = "not-the-secret-0123456789"
    provider = OidcProvider(OidcConfig(config.issuer, config.client_id, secret, CALLBACK), session)
    idp.set_user("u-1", {"preferred_username": "alice"})
    code, state = await browse(idp, provider, "u-1")
    with pytest.raises(OidcError, match=r"answered 401 \(invalid_client\)") as caught:
        await provider.complete(code, state)
    assert secret not in str(caught.value)
    assert code not in str(caught.value)


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"preferred_username": "Not A Name!"}, "not a valid Wharf account name"),
        ({"email": "alice@example.com"}, "no 'preferred_username' claim"),
        ({"preferred_username": "alice", "groups": "dev"}, "not a list"),
    ],
)
async def test_unusable_claims_are_refused(
    idp: MockIdp, provider: OidcProvider, claims: dict[str, object], error: str
) -> None:
    idp.set_user("u-1", claims)
    with pytest.raises(OidcError, match=error):
        await provider.complete(*await browse(idp, provider, "u-1"))


async def test_issuer_must_match_discovery(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    async def discovery(request: web.Request) -> web.Response:
        return web.json_response({"issuer": "https://elsewhere.test"})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    server = await aiohttp_server(app)
    config = OidcConfig(str(server.make_url("")).rstrip("/"), "c", "s", CALLBACK)
    with pytest.raises(OidcError, match="another issuer"):
        await OidcProvider(config, session).start()


async def test_provider_down(idp: MockIdp, provider: OidcProvider, config: OidcConfig) -> None:
    idp.set_user("u-1", {"preferred_username": "alice"})
    code, state = await browse(idp, provider, "u-1")
    idp.stop()
    with pytest.raises(OidcError, match="could not be reached"):
        await provider.complete(code, state)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(OidcError, match="could not be reached"):
            await OidcProvider(config, session).start()


async def test_slow_provider_times_out(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", stall)
    server = await aiohttp_server(app)
    config = OidcConfig(str(server.make_url("")), "c", "s", CALLBACK, timeout_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(OidcError, match="could not be reached"):
        await OidcProvider(config, session).start()
    assert time.monotonic() - started < 2


async def test_oversized_answer_is_refused(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> None:
    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b" " * (MAX_RESPONSE_BYTES + 1), content_type="application/json")

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", huge)
    server = await aiohttp_server(app)
    config = OidcConfig(str(server.make_url("")), "c", "s", CALLBACK)
    with pytest.raises(OidcError, match="too large"):
        await OidcProvider(config, session).start()


class FakeIdp:
    """Discovery and a key set we control, for tokens we sign ourselves."""

    def __init__(self) -> None:
        self.keys = [_key("k1")]
        self.key_fetches = 0
        self.app = web.Application()
        self.app.router.add_get("/.well-known/openid-configuration", self._discovery)
        self.app.router.add_get("/jwks", self._jwks)

    async def _discovery(self, request: web.Request) -> web.Response:
        base = str(request.url.origin())
        return web.json_response(
            {"issuer": base, "authorization_endpoint": f"{base}/authorize"}
            | {"token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks"}
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.key_fetches += 1
        return web.json_response({"keys": [key.as_dict(private=False) for key in self.keys]})


@pytest.fixture
async def fake(
    aiohttp_server: AiohttpServer, session: aiohttp.ClientSession
) -> tuple[FakeIdp, OidcProvider]:
    fake = FakeIdp()
    server = await aiohttp_server(fake.app)
    config = OidcConfig(str(server.make_url("")).rstrip("/"), "wharf", "s", CALLBACK)
    return fake, OidcProvider(config, session)


async def test_keys_are_fetched_again_once_on_an_unknown_kid(
    fake: tuple[FakeIdp, OidcProvider],
) -> None:
    idp, provider = fake
    claims = _claims(provider.config, "n-1")
    await provider.verify_id_token(
        jwt.encode({"alg": "RS256", "kid": "k1"}, claims, idp.keys[0]), "n-1"
    )
    await provider.verify_id_token(
        jwt.encode({"alg": "RS256", "kid": "k1"}, claims, idp.keys[0]), "n-1"
    )
    assert idp.key_fetches == 1  # cached
    idp.keys = [_key("k2")]  # the provider rotates
    await provider.verify_id_token(
        jwt.encode({"alg": "RS256", "kid": "k2"}, claims, idp.keys[0]), "n-1"
    )
    assert idp.key_fetches == 2
    stranger = _key("k3")
    with pytest.raises(OidcError, match="signature"):
        await provider.verify_id_token(
            jwt.encode({"alg": "RS256", "kid": "k3"}, claims, stranger), "n-1"
        )
    assert idp.key_fetches == 3  # one more try, not a loop


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"nonce": ["n-1"]}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"iss": "https://elsewhere.test"}, "iss"),
        ({"aud": ["someone-else"]}, "aud"),
        ({"aud": ["wharf", "someone-else"]}, "azp"),
        ({"aud": ["wharf", "someone-else"], "azp": "someone-else"}, "azp"),
        ({"azp": "someone-else"}, "azp"),
        ({"exp": -120}, "expired"),  # seconds from now, when the test runs (not collected)
        ({"iat": 600}, "in the future"),
        ({"sub": None}, "sub"),
    ],
)
async def test_claims_must_be_exactly_ours(
    fake: tuple[FakeIdp, OidcProvider], change: dict[str, object], error: str
) -> None:
    idp, provider = fake
    now = int(time.time())
    change = {k: now + v if k in ("exp", "iat") and isinstance(v, int) else v
              for k, v in change.items()}  # fmt: skip
    claims = {k: v for k, v in (_claims(provider.config, "n-1") | change).items() if v is not None}
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, idp.keys[0])
    with pytest.raises(OidcError, match=error):
        await provider.verify_id_token(token, "n-1")


@functools.cache
def _key(kid: str) -> RSAKey:
    """An RSA key, made once per test run (generating one costs ~0.1 s)."""
    return RSAKey.generate_key(2048, parameters={"kid": kid})


def _claims(config: OidcConfig, nonce: str) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": config.issuer,
        "aud": config.client_id,
        "sub": "u-1",
        "nonce": nonce,
        "iat": now,
        "exp": now + 300,
        "preferred_username": "alice",
    }
