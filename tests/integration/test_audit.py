"""The audit trail: one entry per action with the right actor, and nothing lost when the
database refuses a batch."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from origin.audit import AuditEvent, AuditLog
from origin.keys import AUDIT
from origin.metadata.db import create_engine, migrate
from tests.support import Client, make_image, push_image


def audit_of(origin: Client) -> AuditLog:
    app = origin.app
    assert app is not None
    log: AuditLog = app[AUDIT]
    return log


async def test_each_action_leaves_one_entry_with_its_actor(origin: Client) -> None:
    image = make_image("audited")
    await push_image(origin, "acme/app", "v1", image)
    async with origin.get("/v2/acme/app/manifests/v1") as r:
        assert r.status == 200
    async with origin.head("/v2/acme/app/manifests/v1") as r:
        assert r.status == 200  # a HEAD checks, it does not pull
    async with origin.delete("/v2/acme/app/manifests/v1") as r:
        assert r.status == 202
    bad = {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()}
    async with origin.get("/auth/token", headers=bad) as r:
        assert r.status == 401
    log = audit_of(origin)
    await log.flush()

    pushes = await log.query(repository="acme/app", action="push")
    assert [(e["actor"], e["reference"], e["detail"]) for e in pushes] == [
        ("admin", image.digest, {"tag": "v1"})
    ]
    pulls = await log.query(repository="acme/app", action="pull")
    assert [(e["actor"], e["reference"]) for e in pulls] == [("admin", image.digest)]
    deletes = await log.query(repository="acme/app", action="delete")
    assert [(e["actor"], e["reference"]) for e in deletes] == [("admin", "v1")]
    logins = await log.query(actor="admin", action="login")
    assert [e["outcome"] for e in logins].count("failed") == 1
    assert all(e["client"] == "127.0.0.1" for e in logins)
    tokens = await log.query(actor="admin", action="token")
    assert any("repository:acme/app:delete,pull,push" in e["detail"]["scopes"] for e in tokens)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


async def test_a_failing_sink_spools_and_loses_nothing(
    database: AsyncEngine, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    unreachable = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'meta.db'}")
    broken = AuditLog(unreachable, spool)
    for i in range(3):
        broken.record(AuditEvent("pull", "ok", "alice", "acme/app", f"sha256:{i}"))
    await broken.flush()
    await unreachable.dispose()
    assert len(list(spool.glob("*.jsonl"))) == 1

    healthy = AuditLog(database, spool)
    healthy.record(AuditEvent("push", "ok", "bob", "acme/app"))
    await healthy.flush()
    events = await healthy.query(repository="acme/app")
    assert [(e["action"], e["actor"]) for e in events] == [
        ("push", "bob"),
        ("pull", "alice"),
        ("pull", "alice"),
        ("pull", "alice"),
    ]
    assert list(spool.glob("*.jsonl")) == []


async def test_retention_deletes_only_what_is_older(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}")
    await migrate(engine)
    log = AuditLog(engine, tmp_path / "spool")
    now = datetime.now(UTC)
    for days in (500, 100, 0):
        log.record(AuditEvent("pull", "ok", "alice", "a/b", at=now - timedelta(days=days)))
    await log.flush()
    assert await log.prune(now - timedelta(days=400)) == 1
    kept = await log.query()
    assert [e["at"] for e in kept] == [now - timedelta(days=100), now]
    await engine.dispose()
