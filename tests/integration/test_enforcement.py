"""Every /v2/ request is authorized: challenges, anonymous pulls of public repositories only,
never an anonymous push, and refused tokens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from origin.config import OriginConfig
from origin.keys import TOKENS
from tests.support import Client, error_code, make_image, push_image, registry_auth, token_for

CHALLENGE = re.compile(r'^Bearer realm="http://127\.0\.0\.1:\d+/auth/token",service="wharf"')


@pytest.fixture
async def anonymous(origin: Client) -> AsyncIterator[aiohttp.ClientSession]:
    """A session with no credentials and no auth middleware, at the same origin."""
    session = aiohttp.ClientSession(base_url=str(origin.make_url("/")))
    yield session
    await session.close()


async def anonymous_token(session: aiohttp.ClientSession, scope: str) -> str:
    async with session.get("/auth/token", params={"service": "wharf", "scope": scope}) as r:
        assert r.status == 200
        return str((await r.json())["token"])


async def test_requests_without_a_token_are_challenged(
    origin: Client, anonymous: aiohttp.ClientSession
) -> None:
    await push_image(origin, "acme/app", "v1", make_image("private"))
    async with anonymous.get("/v2/") as r:
        assert r.status == 401
        assert CHALLENGE.match(r.headers["WWW-Authenticate"])
        assert await error_code(r) == "UNAUTHORIZED"
    async with anonymous.get("/v2/acme/app/manifests/v1") as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].endswith('scope="repository:acme/app:pull"')
    async with anonymous.post("/v2/acme/app/blobs/uploads/") as r:
        assert r.headers["WWW-Authenticate"].endswith('scope="repository:acme/app:pull,push"')
    async with anonymous.delete("/v2/acme/app/manifests/v1") as r:
        assert r.headers["WWW-Authenticate"].endswith('scope="repository:acme/app:delete"')


async def test_anonymous_pulls_public_repositories_only(
    origin: Client, anonymous: aiohttp.ClientSession
) -> None:
    image = make_image("public")
    await push_image(origin, "acme/app", "v1", image)
    token = await anonymous_token(anonymous, "repository:acme/app:pull")
    bearer = {"Authorization": f"Bearer {token}"}
    async with anonymous.get("/v2/acme/app/manifests/v1", headers=bearer) as r:
        assert r.status == 401
        assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    app = origin.app
    assert app is not None
    await app[TOKENS].accounts.store.set_public("acme/app", True)
    token = await anonymous_token(anonymous, "repository:acme/app:pull,push")
    bearer = {"Authorization": f"Bearer {token}"}
    async with anonymous.get("/v2/acme/app/manifests/v1", headers=bearer) as r:
        assert r.status == 200
        assert await r.read() == image.manifest
    async with anonymous.post("/v2/acme/app/blobs/uploads/", headers=bearer) as r:
        assert r.status == 401  # never an anonymous push, public or not
        assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]


async def test_refused_tokens(
    origin: Client, anonymous: aiohttp.ClientSession, origin_config: OriginConfig
) -> None:
    good = await token_for(origin, origin_config.data_dir, "repository:acme/app:pull")
    for token in (good[:-4] + "AAAA", "not-a-jwt", good + "x"):
        async with anonymous.get(
            "/v2/acme/app/tags/list", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 401
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    async with anonymous.get(
        "/v2/acme/other/tags/list", headers={"Authorization": f"Bearer {good}"}
    ) as r:
        assert r.status == 401  # a token for one repository opens no other
        assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]


async def test_malformed_names_are_refused_before_anything_else(
    anonymous: aiohttp.ClientSession,
) -> None:
    async with anonymous.get("/v2/Acme/App/manifests/v1") as r:
        assert r.status == 400
        assert await error_code(r) == "NAME_INVALID"


async def test_the_catalog_is_for_admins(origin: Client, anonymous: aiohttp.ClientSession) -> None:
    token = await anonymous_token(anonymous, "registry:catalog:*")
    async with anonymous.get("/v2/_catalog", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 401
    async with origin.get("/v2/_catalog") as r:  # the admin's client
        assert r.status == 200


async def test_a_robot_works_only_where_it_was_granted(origin: Client) -> None:
    app = origin.app
    assert app is not None
    accounts = app[TOKENS].accounts
    await accounts.create_organization("acme")
    robot, secret = await accounts.create_robot("acme", "ci")
    found = await accounts.store.find_account(robot)
    assert found is not None
    await accounts.store.grant("acme/api", "write", account_id=found.id)
    image = make_image("robot")
    async with aiohttp.ClientSession(
        base_url=str(origin.make_url("/")), middlewares=(registry_auth(robot, lambda: secret),)
    ) as http:
        await push_image(http, "acme/api", "v1", image)
        async with http.get("/v2/acme/api/manifests/v1") as r:
            assert await r.read() == image.manifest
        async with http.post("/v2/acme/web/blobs/uploads/") as r:
            assert r.status == 401  # asked again, still not granted: the client gives up
        async with http.delete("/v2/acme/api/manifests/v1") as r:
            assert r.status == 401  # write is not admin
