"""Signing in to the origin's API through an OpenID Provider (oidc-provider-mock, a real
provider built on authlib): a browser's round trip, a provisioned user, tokens that work."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestServer

from origin.app import create_app
from origin.auth.oidc import OidcConfig
from origin.config import OriginConfig
from tests.oidc_idp import IDP_WARNINGS, MockIdp, running_idp
from tests.support import Client, free_port

pytestmark = IDP_WARNINGS


@pytest.fixture
def idp() -> Iterator[MockIdp]:
    with running_idp() as provider:
        yield provider


@pytest.fixture
async def origin(
    aiohttp_client: AiohttpClient, origin_config: OriginConfig, idp: MockIdp
) -> Client:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/api/v1/oidc/callback"
    client_id, secret = idp.register_client(callback)
    oidc = OidcConfig(idp.issuer, client_id, secret, callback)
    config = dataclasses.replace(origin_config, oidc=oidc)
    return await aiohttp_client(TestServer(create_app(config), port=port))


async def sign_in(origin: Client, idp: MockIdp, sub: str) -> tuple[int, dict[str, object]]:
    async with origin.get("/api/v1/oidc/login", allow_redirects=False, middlewares=()) as r:
        assert r.status == 302
        authorize = r.headers["Location"]
    back = idp.sign_in(authorize, sub)  # the user approves at the provider
    async with origin.get(back.path_qs, middlewares=()) as r:
        return r.status, await r.json()


async def test_an_oidc_user_signs_in_and_uses_the_api(origin: Client, idp: MockIdp) -> None:
    idp.set_user(
        "u-7",
        {"preferred_username": "frank", "email": "frank@corp.test", "email_verified": True},
    )
    status, signed_in = await sign_in(origin, idp, "u-7")
    assert status == 200, signed_in
    bearer = {"Authorization": f"Bearer {signed_in['token']}"}
    async with origin.get("/api/v1/me", headers=bearer, middlewares=()) as r:
        me = await r.json()
    assert (me["name"], me["provider"], me["email"]) == ("frank", "oidc", "frank@corp.test")

    # The refresh token buys registry tokens later, without the provider.
    form = {
        "grant_type": "refresh_token",
        "refresh_token": str(signed_in["refresh_token"]),
        "client_id": "podman",
        "scope": "repository:frank/app:push",
    }
    async with origin.post("/auth/token", data=form, middlewares=()) as r:
        assert (await r.json())["scope"] == "repository:frank/app:push"

    # A replayed callback (the same code and state) is refused, as is a made-up one.
    async with origin.get("/api/v1/oidc/login", allow_redirects=False, middlewares=()) as r:
        back = idp.sign_in(r.headers["Location"], "u-7")
    async with origin.get(back.path_qs, middlewares=()) as r:
        assert r.status == 200
    async with origin.get(back.path_qs, middlewares=()) as r:
        assert r.status == 401
    async with origin.get("/api/v1/oidc/callback?code=x&state=y", middlewares=()) as r:
        assert r.status == 401


async def test_the_provider_cannot_take_over_a_local_account(origin: Client, idp: MockIdp) -> None:
    idp.set_user("u-9", {"preferred_username": "admin"})
    status, body = await sign_in(origin, idp, "u-9")
    assert status == 401
    assert "another account" in str(body)
