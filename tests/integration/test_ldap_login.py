"""Signing in to the origin with LDAP credentials: the user is provisioned on first login,
their LDAP groups decide their synced teams, and local accounts cannot be taken over."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from aiohttp import encode_basic_auth
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestServer

from origin.app import create_app
from origin.config import OriginConfig
from origin.keys import TOKENS
from tests.ldap_server import SlapdServer
from tests.support import Client


@pytest.fixture
def slapd() -> Iterator[SlapdServer]:
    with SlapdServer() as server:
        server.add_user("alice", "alice-pw", "alice@wharf.test")
        server.add_user("bob", "bob-pw")
        server.add_user("admin", "directory-admin-pw")
        server.add_group("platform", ["alice", "bob"])
        yield server


@pytest.fixture
async def origin(
    aiohttp_client: AiohttpClient, origin_config: OriginConfig, slapd: SlapdServer
) -> Client:
    config = dataclasses.replace(origin_config, ldap=slapd.config())
    return await aiohttp_client(TestServer(create_app(config)))


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": encode_basic_auth(name, password)}


async def scopes(origin: Client, headers: dict[str, str], scope: str) -> tuple[int, str]:
    url = f"/auth/token?service=wharf&scope={scope}"
    async with origin.get(url, headers=headers) as r:
        return r.status, (await r.json()).get("scope", "") if r.status == 200 else ""


async def test_ldap_users_are_provisioned_and_synced_to_teams(
    origin: Client, origin_config: OriginConfig, slapd: SlapdServer
) -> None:
    alice = basic("alice", "alice-pw")
    assert await scopes(origin, alice, "repository:alice/tool:push") == (
        200,
        "repository:alice/tool:push",  # her own namespace, from the first login
    )
    async with origin.get("/api/v1/me", headers=alice) as r:
        me = await r.json()
    assert (me["provider"], me["email"]) == ("ldap", "alice@wharf.test")
    assert await scopes(origin, basic("alice", "wrong"), "repository:alice/tool:pull") == (401, "")

    root = basic("admin", (origin_config.data_dir / "admin-password").read_text().strip())
    async with origin.post("/api/v1/organizations", headers=root, json={"name": "infra"}) as r:
        assert r.status == 201
    team = {"name": "platform", "role": "admin", "external_group": "platform"}
    async with origin.post("/api/v1/organizations/infra/teams", headers=root, json=team) as r:
        assert r.status == 201
    # Membership follows the directory at the next sign-in (remembered logins last 60 s).
    app = origin.app
    assert app is not None
    app[TOKENS].accounts.forget_logins()
    assert await scopes(origin, alice, "repository:infra/base:push") == (
        200,
        "repository:infra/base:push",
    )
    async with origin.get("/api/v1/organizations/infra", headers=root) as r:
        teams = {t["name"]: t["members"] for t in (await r.json())["teams"]}
    assert teams["platform"] == ["alice"]

    # Out of the group in LDAP: out of the team at the next sign-in.
    slapd.remove_member("platform", "alice")
    app[TOKENS].accounts.forget_logins()
    assert await scopes(origin, alice, "repository:infra/base:push") == (200, "")


async def test_the_directory_cannot_take_over_a_local_account(origin: Client) -> None:
    # "admin" exists in LDAP too, with another password: the local admin stays local.
    status, _ = await scopes(origin, basic("admin", "directory-admin-pw"), "registry:catalog:*")
    assert status == 401


async def test_a_directory_that_is_down_is_a_503_not_a_denial(
    origin: Client, slapd: SlapdServer
) -> None:
    slapd.stop()
    async with origin.get("/auth/token?service=wharf", headers=basic("alice", "alice-pw")) as r:
        assert r.status == 503
        assert (await r.json())["errors"][0]["code"] == "UNAVAILABLE"
