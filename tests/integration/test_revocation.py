"""Revoking a robot or an app token: no new token at once, and the outstanding ones stop
working when they expire (a short token lifetime here; five minutes by default)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from aiohttp import encode_basic_auth
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestServer

from origin.app import create_app
from origin.config import OriginConfig
from tests.support import Client

TTL = 1.0


@pytest.fixture
async def origin(aiohttp_client: AiohttpClient, origin_config: OriginConfig) -> Client:
    config = dataclasses.replace(origin_config, token_ttl_seconds=TTL)
    return await aiohttp_client(TestServer(create_app(config)))


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": encode_basic_auth(name, password)}


async def registry_token(origin: Client, auth: dict[str, str], scope: str) -> tuple[int, str]:
    async with origin.get(f"/auth/token?service=wharf&scope={scope}", headers=auth) as r:
        return r.status, (await r.json()).get("token", "") if r.status == 200 else ""


async def tags(origin: Client, token: str) -> int:
    async with origin.get(
        "/v2/acme/app/tags/list", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        return r.status


async def test_revoked_robots_and_app_tokens_lose_access(
    origin: Client, origin_config: OriginConfig
) -> None:
    root = basic("admin", (origin_config.data_dir / "admin-password").read_text().strip())

    async def api(method: str, path: str, body: object = None) -> dict[str, object]:
        async with origin.request(method, f"/api/v1{path}", json=body, headers=root) as r:
            assert r.status < 300, await r.text()
            return await r.json() if r.status != 204 else {}

    await api("POST", "/organizations", {"name": "acme"})
    robot = await api("POST", "/namespaces/acme/robots", {"name": "ci"})
    await api("PUT", "/repositories/acme/app/-/permissions/accounts/acme+ci", {"role": "read"})
    app_token = await api("POST", "/me/tokens", {"label": "laptop"})
    as_robot = basic("acme+ci", str(robot["secret"]))
    as_app = basic("admin", str(app_token["token"]))

    outstanding = []
    for auth in (as_robot, as_app):
        status, token = await registry_token(origin, auth, "repository:acme/app:pull")
        assert status == 200
        assert await tags(origin, token) == 200  # allowed in (no tags yet)
        outstanding.append(token)
    revoked_at = time.monotonic()
    await api("DELETE", "/namespaces/acme/robots/ci")
    await api("DELETE", f"/me/tokens/{app_token['id']}")

    for auth in (as_robot, as_app):  # no new token, at once
        assert (await registry_token(origin, auth, "repository:acme/app:pull"))[0] == 401
    # Tokens already handed out live out their short lives, then are refused.
    await asyncio.sleep(max(0.0, revoked_at + TTL + 1.5 - time.monotonic()))
    for token in outstanding:
        assert await tags(origin, token) == 401
