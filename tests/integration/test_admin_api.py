"""The admin API over HTTP: who may manage what, what every change leaves in the audit log,
and bad bodies refused without a trace."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import encode_basic_auth

from origin.audit import AuditLog
from origin.config import OriginConfig
from origin.keys import AUDIT
from tests.support import Client, snapshot

API = "/api/v1"
PASSWORD = "s3cret-enough"


Auth = dict[str, str]


def BasicAuth(name: str, password: str) -> Auth:
    return {"Authorization": encode_basic_auth(name, password)}


@pytest.fixture
def root(origin_config: OriginConfig) -> Auth:
    password = (origin_config.data_dir / "admin-password").read_text().strip()
    return BasicAuth("admin", password)


async def call(
    origin: Client,
    method: str,
    path: str,
    auth: Auth | None = None,
    body: Any = None,
    expect: int = 200,
    headers: dict[str, str] | None = None,
) -> Any:
    async with origin.request(
        method, API + path, json=body, headers=headers or auth, middlewares=()
    ) as r:
        text = await r.text()
        assert r.status == expect, f"{method} {path}: {r.status} {text}"
        if text and r.content_type == "application/json":
            return await r.json()
        return text


async def audit_log(origin: Client) -> AuditLog:
    assert origin.app is not None
    log: AuditLog = origin.app[AUDIT]
    await log.flush()
    return log


async def token_scopes(origin: Client, auth: Auth, *scopes: str) -> list[str]:
    params = [("service", "wharf"), *(("scope", s) for s in scopes)]
    async with origin.get("/auth/token", params=params, headers=auth, middlewares=()) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["scope"]).split()


async def test_openapi_describes_every_route(origin: Client) -> None:
    document = await call(origin, "GET", "/openapi.json")
    assert document["openapi"].startswith("3.1")
    described = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert origin.app is not None
    served = {
        (route.method, re.sub(r"{(\w+):[^}]*}", r"{\1}", route.resource.canonical))
        for route in origin.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(API)
        and route.method != "HEAD"
    }
    assert described == served - {("GET", "/api/v1/openapi.json")}
    assert ("PUT", "/api/v1/repositories/{repository}/-/visibility") in described
    assert "UserCreate" in document["components"]["schemas"]


async def test_an_organization_from_creation_to_access(origin: Client, root: Auth) -> None:
    alice, bob = BasicAuth("alice", PASSWORD), BasicAuth("bob", PASSWORD)
    for name in ("alice", "bob"):
        created = await call(
            origin, "POST", "/users", root, {"name": name, "password": PASSWORD}, expect=201
        )
        assert created["kind"] == "user"
        assert created["provider"] == "local"
    org = await call(origin, "POST", "/organizations", alice, {"name": "acme"}, expect=201)
    assert org["teams"] == [
        {"name": "owners", "role": "admin", "external_group": None, "members": ["alice"]}
    ]
    await call(origin, "POST", "/acme/teams", bob, expect=404)  # no such route
    await call(
        origin, "POST", "/organizations/acme/teams", bob, {"name": "devs"}, expect=403
    )  # bob manages nothing in acme
    await call(origin, "POST", "/organizations/acme/teams", alice, {"name": "devs"}, expect=201)
    await call(origin, "PUT", "/organizations/acme/teams/devs/members/bob", alice, expect=204)
    await call(
        origin,
        "PUT",
        "/repositories/acme/api/-/permissions/teams/devs",
        alice,
        {"role": "write"},
        expect=204,
    )
    assert await token_scopes(origin, bob, "repository:acme/api:pull,push") == [
        "repository:acme/api:pull,push"
    ]
    assert await token_scopes(origin, bob, "repository:acme/web:pull") == []

    robot = await call(origin, "POST", "/namespaces/acme/robots", alice, {"name": "ci"}, expect=201)
    assert robot["name"] == "acme+ci"
    ci = BasicAuth("acme+ci", robot["secret"])
    await call(
        origin,
        "PUT",
        "/repositories/acme/web/-/permissions/accounts/acme+ci",
        alice,
        {"role": "read"},
        expect=204,
    )
    assert await token_scopes(origin, ci, "repository:acme/web:pull,push") == [
        "repository:acme/web:pull"
    ]
    assert await token_scopes(origin, ci, "repository:acme/api:pull") == []
    listed = await call(origin, "GET", "/namespaces/acme/robots", alice)
    assert [r["name"] for r in listed] == ["acme+ci"]
    assert "secret" not in listed[0]

    rotated = await call(origin, "POST", "/namespaces/acme/robots/ci/secret", alice)
    async with origin.get("/auth/token", headers=ci, middlewares=()) as r:
        assert r.status == 401  # the old secret, at once
    assert await token_scopes(
        origin, BasicAuth("acme+ci", rotated["secret"]), "repository:acme/web:pull"
    ) == ["repository:acme/web:pull"]

    anonymous = "/auth/token?service=wharf&scope=repository:acme/web:pull"
    async with origin.get(anonymous, middlewares=()) as r:
        assert (await r.json())["scope"] == ""
    access = await call(
        origin, "PUT", "/repositories/acme/web/-/visibility", alice, {"public": True}
    )
    assert access == {
        "name": "acme/web",
        "public": True,
        "permissions": [{"kind": "account", "subject": "acme+ci", "role": "read"}],
    }
    async with origin.get(anonymous, middlewares=()) as r:
        assert (await r.json())["scope"] == "repository:acme/web:pull"
    await call(
        origin, "PUT", "/repositories/acme/web/-/visibility", bob, {"public": False}, expect=403
    )

    shown = await call(origin, "GET", "/organizations/acme", bob)
    assert [t["name"] for t in shown["teams"]] == ["devs", "owners"]
    await call(origin, "DELETE", "/organizations/acme/teams/devs/members/bob", alice, expect=204)
    await call(origin, "GET", "/organizations/acme", bob, expect=403)
    assert await token_scopes(origin, bob, "repository:acme/api:pull") == []


async def test_every_change_leaves_one_audit_entry(origin: Client, root: Auth) -> None:
    await call(origin, "POST", "/users", root, {"name": "carol", "password": PASSWORD}, expect=201)
    carol = BasicAuth("carol", PASSWORD)
    await call(origin, "POST", "/organizations", carol, {"name": "shop"}, expect=201)
    await call(
        origin,
        "POST",
        "/organizations/shop/teams",
        carol,
        {"name": "ops", "role": "creator"},
        expect=201,
    )
    await call(origin, "PUT", "/organizations/shop/teams/ops/members/carol", carol, expect=204)
    await call(origin, "PATCH", "/organizations/shop/teams/ops", carol, {"role": "member"})
    await call(origin, "POST", "/namespaces/shop/robots", carol, {"name": "deploy"}, expect=201)
    await call(origin, "POST", "/namespaces/shop/robots/deploy/secret", carol)
    await call(
        origin,
        "PUT",
        "/repositories/shop/cart/-/permissions/teams/ops",
        carol,
        {"role": "read"},
        expect=204,
    )
    await call(
        origin, "DELETE", "/repositories/shop/cart/-/permissions/teams/ops", carol, expect=204
    )
    await call(origin, "PUT", "/repositories/shop/cart/-/visibility", carol, {"public": True})
    token = await call(origin, "POST", "/me/tokens", carol, {"label": "laptop"}, expect=201)
    await call(origin, "DELETE", f"/me/tokens/{token['id']}", carol, expect=204)
    await call(origin, "DELETE", "/namespaces/shop/robots/deploy", carol, expect=204)
    await call(origin, "DELETE", "/organizations/shop/teams/ops", carol, expect=204)
    await call(
        origin, "POST", "/users", carol, {"name": "mallory", "password": PASSWORD}, expect=403
    )
    await call(origin, "PATCH", "/users/carol", root, {"disabled": True})

    log = await audit_log(origin)
    by_carol = [
        (e["action"], e["outcome"])
        for e in await log.query(actor="carol")
        if e["action"] != "login"
    ]
    assert by_carol == [
        ("org.create", "ok"),
        ("team.create", "ok"),
        ("team.member.add", "ok"),
        ("team.update", "ok"),
        ("robot.create", "ok"),
        ("robot.rotate", "ok"),
        ("permission.set", "ok"),
        ("permission.remove", "ok"),
        ("visibility.set", "ok"),
        ("apptoken.create", "ok"),
        ("apptoken.revoke", "ok"),
        ("robot.delete", "ok"),
        ("team.delete", "ok"),
        ("user.create", "denied"),
    ]
    (visibility,) = await log.query(action="visibility.set")
    assert visibility["repository"] == "shop/cart"
    assert visibility["client"] == "127.0.0.1"
    by_admin = [e["action"] for e in await log.query(actor="admin") if e["action"] != "login"]
    assert by_admin == ["user.create", "user.update"]
    assert all("s3cret" not in str(e) for e in await log.query(limit=1000))

    # The disabled account is refused at once, though its login was remembered.
    await call(origin, "GET", "/me", carol, expect=401)

    page = await call(origin, "GET", "/audit?action=robot.create", root)
    assert [e["actor"] for e in page["events"]] == ["carol"]
    assert page["next_after"] is None
    one = await call(origin, "GET", "/audit?actor=carol&limit=1", root)
    assert len(one["events"]) == 1
    following = await call(
        origin, "GET", f"/audit?actor=carol&limit=1&after={one['next_after']}", root
    )
    assert following["events"][0]["id"] > one["events"][0]["id"]
    await call(origin, "GET", "/audit", carol, expect=401)

    async with origin.get(f"{API}/audit/export?actor=carol", headers=root, middlewares=()) as r:
        assert r.status == 200
        assert r.content_type == "application/x-ndjson"
        lines = (await r.text()).splitlines()
    assert len(lines) == len(await log.query(actor="carol", limit=1000))


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/users", {"name": "dave", "password": PASSWORD, "role": "god"}, 400),  # unknown field
        ("/users", {"name": "Dave", "password": PASSWORD}, 400),  # not a valid name
        ("/users", {"name": "dave", "password": ""}, 400),
        ("/users", {"name": "dave", "password": PASSWORD, "admin": "yes please"}, 400),
        ("/users", ["dave"], 400),
        ("/users", {"name": "dave", "password": "x" * 70_000}, 413),
        ("/organizations", {"name": "admin"}, 409),  # the name is taken
        ("/namespaces/admin/robots", {"name": "ci", "expires_at": "2001-01-01T00:00:00Z"}, 400),
    ],
)
async def test_bad_bodies_change_nothing(
    origin: Client, root: Auth, origin_config: OriginConfig, path: str, body: Any, status: int
) -> None:
    await call(origin, "GET", "/me", root)
    before = snapshot(origin_config.data_dir)
    result = await call(origin, "POST", path, root, body, expect=status)
    assert result["errors"][0]["code"] in {"INVALID_REQUEST", "CONFLICT"}
    assert snapshot(origin_config.data_dir) == before
    assert [u["name"] for u in await call(origin, "GET", "/users", root)] == ["admin"]


async def test_the_api_takes_api_tokens_not_registry_tokens(origin: Client, root: Auth) -> None:
    async def bearer(*scopes: str) -> dict[str, str]:
        params = [("service", "wharf"), *(("scope", s) for s in scopes)]
        async with origin.get("/auth/token", params=params, headers=root, middlewares=()) as r:
            return {"Authorization": f"Bearer {(await r.json())['token']}"}

    me = await call(origin, "GET", "/me", headers=await bearer("api:v1:*"))
    assert me["name"] == "admin"
    await call(origin, "GET", "/me", headers=await bearer("repository:admin/x:pull"), expect=401)
    await call(origin, "GET", "/me", headers={"Authorization": "Bearer nonsense"}, expect=401)
    await call(origin, "GET", "/me", expect=401)
    async with origin.get("/auth/token?scope=api:v1:*", middlewares=()) as r:
        assert (await r.json())["scope"] == ""  # nobody anonymous gets the API


async def test_refresh_tokens_stand_in_for_the_password(origin: Client, root: Auth) -> None:
    await call(origin, "POST", "/users", root, {"name": "erin", "password": PASSWORD}, expect=201)
    form = {
        "grant_type": "password",
        "username": "erin",
        "password": PASSWORD,
        "client_id": "docker",
        "access_type": "offline",
        "service": "wharf",
        "scope": "repository:erin/app:pull,push",
    }
    async with origin.post("/auth/token", data=form, middlewares=()) as r:
        assert r.status == 200, await r.text()
        issued = await r.json()
    refresh = issued["refresh_token"]
    assert refresh.startswith("wharf_rt_")
    assert issued["scope"] == "repository:erin/app:pull,push"

    again = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "docker"}
    async with origin.post("/auth/token", data=again, middlewares=()) as r:
        assert r.status == 200
    async with origin.get("/auth/token", headers=BasicAuth("erin", refresh), middlewares=()) as r:
        assert r.status == 401  # a refresh token is not a password

    wrong = {**again, "refresh_token": refresh[:-3] + "abc"}
    async with origin.post("/auth/token", data=wrong, middlewares=()) as r:
        assert r.status == 401

    # The user sees the sign-in among their tokens, with its last use, and can end it.
    erin = BasicAuth("erin", PASSWORD)
    (listed,) = await call(origin, "GET", "/me/tokens", erin)
    assert (listed["kind"], listed["label"]) == ("refresh", "docker")
    assert listed["last_used_at"] is not None
    await call(origin, "DELETE", f"/me/tokens/{listed['id']}", erin, expect=204)
    async with origin.post("/auth/token", data=again, middlewares=()) as r:
        assert r.status == 401

    # Disabling the account ends every refresh token it holds.
    async with origin.post("/auth/token", data=form, middlewares=()) as r:
        second = {**again, "refresh_token": (await r.json())["refresh_token"]}
    async with origin.post("/auth/token", data=second, middlewares=()) as r:
        assert r.status == 200
    await call(origin, "PATCH", "/users/erin", root, {"disabled": True})
    async with origin.post("/auth/token", data=second, middlewares=()) as r:
        assert r.status == 401


async def test_bad_refresh_tokens_lock_out_no_one_else(origin: Client, root: Auth) -> None:
    """Refresh failures count against the client's address only: a stream of bad refresh
    tokens (more than an account's limit) does not stop a good one."""
    await call(origin, "POST", "/users", root, {"name": "fay", "password": PASSWORD}, expect=201)
    form = {"grant_type": "password", "username": "fay", "password": PASSWORD,
            "client_id": "docker", "access_type": "offline", "service": "wharf"}  # fmt: skip
    async with origin.post("/auth/token", data=form, middlewares=()) as r:
        refresh = (await r.json())["refresh_token"]
    bad = {"grant_type": "refresh_token", "refresh_token": "wharf_rt_1_nope", "client_id": "c"}
    for _ in range(12):  # past login_failures_per_account (10)
        async with origin.post("/auth/token", data=bad, middlewares=()) as r:
            assert r.status == 401
    good = {**bad, "refresh_token": refresh}
    async with origin.post("/auth/token", data=good, middlewares=()) as r:
        assert r.status == 200, await r.text()


async def test_nobody_locks_themselves_out(origin: Client, root: Auth) -> None:
    await call(origin, "PATCH", "/users/admin", root, {"disabled": True}, expect=403)
    await call(origin, "PATCH", "/users/admin", root, {"admin": False}, expect=403)
    await call(origin, "POST", "/users", root, {"name": "gus", "password": PASSWORD}, expect=201)
    gus = BasicAuth("gus", PASSWORD)
    token = (await call(origin, "POST", "/me/tokens", gus, {"label": "ci"}, expect=201))["token"]
    # A stolen token (or an app token) cannot change the password it stands beside.
    change = {"password": "new-password-1"}
    await call(origin, "PATCH", "/users/gus", BasicAuth("gus", token), change, expect=403)
    stolen = {**change, "current_password": token}
    await call(origin, "PATCH", "/users/gus", BasicAuth("gus", token), stolen, expect=403)
    await call(origin, "PATCH", "/users/gus", gus, {**change, "current_password": PASSWORD})
    await call(origin, "GET", "/me", BasicAuth("gus", "new-password-1"))
    await call(origin, "GET", "/me", gus, expect=401)
    # An admin sets another user's password without knowing the old one.
    await call(origin, "PATCH", "/users/gus", root, {"password": PASSWORD})
    await call(origin, "GET", "/me", gus)


async def test_an_admin_rotates_a_leaked_signing_key(origin: Client, root: Auth) -> None:
    async with origin.get("/auth/token?service=wharf&scope=api:v1:*", headers=root) as r:
        bearer = {"Authorization": f"Bearer {(await r.json())['token']}"}
    (key,) = await call(origin, "GET", "/signing-keys", headers=bearer)
    assert key["state"] == "signing"

    gentle = await call(origin, "POST", "/signing-keys", root, {}, expect=201)
    assert [k["state"] for k in gentle] == ["signing", "next"]
    await call(origin, "GET", "/me", headers=bearer)  # nothing outstanding is refused

    leaked = await call(origin, "POST", "/signing-keys", root, {"immediately": True}, expect=201)
    assert [k["state"] for k in leaked] == ["signing"]
    await call(origin, "GET", "/me", headers=bearer, expect=401)  # every old token dies
    async with origin.get("/auth/jwks") as r:
        assert [k["kid"] for k in (await r.json())["keys"]] == [leaked[0]["kid"]]
    log = await audit_log(origin)
    assert [e["detail"]["immediately"] for e in await log.query(action="key.rotate")] == [
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"grant_type": "magic", "client_id": "c"}, 403),
        ({"grant_type": "refresh_token", "refresh_token": "wharf_rt_1_nope"}, 403),  # no client
        ({"grant_type": "refresh_token", "refresh_token": "x" * 40, "client_id": "c"}, 401),
        ({"grant_type": "password", "username": "admin", "client_id": "c"}, 403),
        ({"grant_type": "password", "client_id": "c", "junk": "y" * 20_000}, 413),
    ],
)
async def test_bad_token_forms_change_nothing(
    origin: Client, origin_config: OriginConfig, form: dict[str, str], status: int
) -> None:
    before = snapshot(origin_config.data_dir)
    async with origin.post("/auth/token", data=form, middlewares=()) as r:
        assert r.status == status
        assert '"refresh_token":' not in await r.text()  # no token handed out
    assert snapshot(origin_config.data_dir) == before
