"""The token endpoint: who gets which access, and who gets a 401."""

from __future__ import annotations

import base64
from pathlib import Path

from ocicore.auth.tokens import TokenVerifier
from origin.auth.accounts import AccountService
from origin.auth.token_endpoint import TokenService
from origin.config import OriginConfig
from origin.keys import TOKENS
from tests.support import Client, error_code


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def accounts_of(origin: Client) -> AccountService:
    app = origin.app
    assert app is not None
    tokens: TokenService = app[TOKENS]
    return tokens.accounts


def admin_password(config: OriginConfig) -> str:
    return (config.data_dir / "admin-password").read_text().strip()


async def verifier(origin: Client) -> TokenVerifier:
    async with origin.get("/auth/jwks") as r:
        return TokenVerifier.from_jwks(await r.json(), "wharf-origin", "wharf")


async def token(origin: Client, scope: str, headers: dict[str, str] | None = None) -> str:
    async with origin.get(
        "/auth/token", params={"service": "wharf", "scope": scope}, headers=headers or {}
    ) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Cache-Control"] == "no-store"
        body = await r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    return str(body["token"])


async def test_first_start_creates_an_admin_with_a_private_password_file(
    origin: Client, origin_config: OriginConfig
) -> None:
    path: Path = origin_config.data_dir / "admin-password"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(admin_password(origin_config)) >= 24


async def test_admin_gets_what_it_asks_for(origin: Client, origin_config: OriginConfig) -> None:
    creds = basic("admin", admin_password(origin_config))
    grant = (await verifier(origin)).verify(
        await token(origin, "repository:any/thing:pull,push", creds)
    )
    assert grant.subject == "admin"
    assert grant.allows("repository", "any/thing", "push")
    assert not grant.allows("repository", "any/thing", "delete")  # not asked for


async def test_anonymous_gets_pull_on_public_repositories_only(origin: Client) -> None:
    check = await verifier(origin)
    grant = check.verify(await token(origin, "repository:acme/api:pull,push"))
    assert not grant.allows("repository", "acme/api", "pull")
    store = accounts_of(origin).store
    await store.set_public("acme/api", True)
    grant = check.verify(await token(origin, "repository:acme/api:pull,push"))
    assert grant.allows("repository", "acme/api", "pull")
    assert not grant.allows("repository", "acme/api", "push")  # never anonymous push


async def test_users_get_their_namespace(origin: Client) -> None:
    accounts = accounts_of(origin)
    await accounts.create_user("alice", "s3cret-pass")
    check = await verifier(origin)
    creds = basic("alice", "s3cret-pass")
    mine = check.verify(await token(origin, "repository:alice/app:*", creds))
    assert mine.allows("repository", "alice/app", "delete")
    theirs = check.verify(await token(origin, "repository:bob/app:pull", creds))
    assert not theirs.allows("repository", "bob/app", "pull")


async def test_wrong_password_is_401_and_never_echoed(origin: Client) -> None:
    async with origin.get(
        "/auth/token", params={"scope": "repository:a/b:pull"}, headers=basic("admin", "guess-1")
    ) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert "guess-1" not in await r.text()


async def test_bad_requests(origin: Client) -> None:
    for params in (
        {"scope": "repository:Bad/Name:pull"},
        {"scope": "repository:a/b:steal"},
        {"service": "elsewhere", "scope": "repository:a/b:pull"},
    ):
        async with origin.get("/auth/token", params=params) as r:
            assert r.status == 403
            assert await error_code(r) == "DENIED"


async def test_failed_logins_are_throttled_per_account(
    origin: Client, origin_config: OriginConfig
) -> None:
    for _ in range(10):
        async with origin.get("/auth/token", headers=basic("admin", "guess")) as r:
            assert r.status == 401
    right = basic("admin", admin_password(origin_config))
    async with origin.get("/auth/token", headers=right, middlewares=()) as r:
        assert r.status == 429  # even the right password, until the window passes
        assert await error_code(r) == "TOOMANYREQUESTS"
        assert int(r.headers["Retry-After"]) > 0
    accounts = accounts_of(origin)
    await accounts.create_user("carol", "carols-pass")
    async with origin.get("/auth/token", headers=basic("carol", "carols-pass")) as r:
        assert r.status == 200  # other accounts are unaffected
