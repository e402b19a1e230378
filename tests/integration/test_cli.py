"""The ``wharf`` admin commands against a real origin process, as an operator types them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import aiohttp

from tests.process import OriginProcess
from tests.support import make_image, push_image, registry_auth, sha256


async def wharf(
    origin: OriginProcess,
    *args: str,
    user: str = "admin",
    password: str | None = None,
    stdin: str = "",
) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "WHARF_REGISTRY": origin.url,
        "WHARF_USER": user,
        "WHARF_PASSWORD": password or (origin.data_dir / "admin-password").read_text().strip(),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wharf.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def ok(origin: OriginProcess, *args: str, **kwargs: Any) -> Any:
    code, out, err = await wharf(origin, *args, **kwargs)
    assert code == 0, err
    return json.loads(out) if out.strip() else None


async def test_an_operator_sets_up_an_organization(origin_process: OriginProcess) -> None:
    o = origin_process
    await ok(o, "users", "create", "dana", "--new-password-stdin", stdin="danas-password\n")
    dana = {"user": "dana", "password": "danas-password"}
    org = await ok(o, "orgs", "create", "labs", **dana)
    assert org["teams"][0]["members"] == ["dana"]
    await ok(o, "teams", "create", "labs", "readers", "--role", "member", **dana)
    robot = await ok(o, "robots", "create", "labs", "ci", **dana)
    assert robot["name"] == "labs+ci"
    await ok(o, "teams", "add", "labs", "readers", "labs+ci", **dana)
    await ok(o, "permissions", "grant", "labs/model", "read", "--team", "readers", **dana)
    await ok(o, "visibility", "labs/model", "public", **dana)
    shown = await ok(o, "permissions", "show", "labs/model", **dana)
    assert shown == {
        "name": "labs/model",
        "public": True,
        "permissions": [{"kind": "team", "subject": "readers", "role": "read"}],
    }
    token = await ok(o, "tokens", "create", "laptop", **dana)
    assert (await ok(o, "me", "show", user="dana", password=token["token"]))["name"] == "dana"
    await ok(o, "tokens", "revoke", str(token["id"]), **dana)
    code, _, err = await wharf(o, "me", "show", user="dana", password=token["token"])
    assert code == 1
    assert "401" in err

    (key,) = await ok(o, "keys", "list")
    assert key["state"] == "signing"
    code, _, err = await wharf(o, "users", "list", **dana)
    assert (code, "403" in err) == (1, True)  # dana is no system admin

    code, out, _ = await wharf(o, "audit", "--export", "--actor", "dana")
    assert code == 0
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    for done in (
        "org.create",
        "team.create",
        "robot.create",
        "team.member.add",
        "permission.set",
        "visibility.set",
        "apptoken.create",
        "apptoken.revoke",
    ):
        assert actions.count(done) == 1, (done, actions)
    assert actions.count("user.list") == 1  # the denied attempt, too

    # No secret reached the origin's log: not the passwords, the robot's, nor the app token.
    await o.stop()
    log = o.log.read_text()
    for secret in (
        "danas-password",
        robot["secret"],
        token["token"],
        (o.data_dir / "admin-password").read_text().strip(),
    ):
        assert secret not in log


async def test_an_operator_manages_replication_rules(origin_process: OriginProcess) -> None:
    o = origin_process
    rule = await ok(o, "replication", "add", "team-a/*", "eu", "us", "--tags", "v*")
    assert (rule["repositories"], rule["tags"], rule["regions"]) == ("team-a/*", "v*", ["eu", "us"])
    assert [r["id"] for r in await ok(o, "replication", "list")] == [rule["id"]]
    code, _, err = await wharf(o, "replication", "add", "Team A", "eu")
    assert (code, "400" in err) == (1, True)
    await ok(o, "replication", "remove", str(rule["id"]))
    assert await ok(o, "replication", "list") == []


async def test_an_operator_goes_back_in_time_and_places_a_namespace(
    origin_process: OriginProcess,
) -> None:
    o = origin_process
    password = (o.data_dir / "admin-password").read_text().strip()
    async with aiohttp.ClientSession(
        base_url=o.url, middlewares=(registry_auth("admin", lambda: password),)
    ) as http:
        first, second = make_image("first"), make_image("second")
        await push_image(http, "ops/app", "prod", first)
        await push_image(http, "ops/app", "prod", second)
    history = await ok(o, "tags", "history", "ops/app", "prod")
    assert [s["digest"] for s in history["states"]] == [second.digest, first.digest]
    restored = await ok(o, "tags", "restore", "ops/app", "prod", first.digest)
    assert restored["previous"] == second.digest
    await ok(o, "orgs", "create", "ops")
    assert (await ok(o, "tags", "window", "ops", "--days", "3"))["seconds"] == 3 * 86400
    assert (await ok(o, "tags", "window", "ops"))["seconds"] == 3 * 86400
    assert (await ok(o, "tags", "expire", "ops/app", "prod"))["forgotten"] == 2
    (location,) = await ok(o, "storage", "locations")
    assert location == {"name": "local", "driver": "filesystem", "region": "", "pending": 0,
                        "nearest": 0}  # fmt: skip
    placed = await ok(o, "storage", "blob", sha256(first.config))
    assert placed["locations"] == ["local"]
    assert (await ok(o, "storage", "backfill")) == {"recorded": 0, "queued": 0}
    swept = await ok(o, "gc", "run")  # every state still reaches something: nothing goes
    assert (swept["repositories"], swept["manifests"], swept["blobs"]) == (1, 0, 0)
    rule = await ok(o, "immutable", "add", "ops", "v*", "--repository", "ops/app")
    assert [r["pattern"] for r in await ok(o, "immutable", "list", "ops")] == ["v*"]
    await ok(o, "immutable", "remove", "ops", str(rule["id"]))
    hook = await ok(o, "webhooks", "add", "ops", "http://127.0.0.1:9/hook", "push")
    assert hook["secret"]
    ping = await ok(o, "webhooks", "test", "ops", str(hook["id"]))
    assert "not a public address" in ping["last_error"]  # the default refuses loopback
    (logged,) = await ok(o, "webhooks", "deliveries", "ops", str(hook["id"]))
    assert logged["event"] == "ping"
    await ok(o, "webhooks", "remove", "ops", str(hook["id"]))
    assert (await ok(o, "quota", "set", "ops", "5GiB"))["quota_bytes"] == 5 << 30
    assert (await ok(o, "quota", "show", "ops"))["used_bytes"] > 0
    assert await ok(o, "webhooks", "list", "ops") == []
