"""Accounts, teams and permissions in a real database, decided by the policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from origin.auth.accounts import AccountService
from origin.auth.policy import ANONYMOUS, Actor, allowed_actions
from origin.metadata.access import AccessStore, NameTaken
from origin.metadata.db import create_engine, migrate

# Cheap argon2 parameters: the tests check behaviour, not hashing cost.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
async def accounts(tmp_path: Path) -> AsyncIterator[AccountService]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}")
    await migrate(engine)
    yield AccountService(AccessStore(engine), FAST)
    await engine.dispose()


async def can(accounts: AccountService, actor: Actor, repository: str) -> set[str]:
    facts = await accounts.store.repository_facts(actor.account_id, repository)
    return set(allowed_actions(actor, facts))


async def test_passwords(accounts: AccountService) -> None:
    await accounts.create_user("alice", "correct horse")
    alice = await accounts.authenticate("alice", "correct horse")
    assert alice is not None
    assert alice.name == "alice"
    assert await accounts.authenticate("alice", "wrong") is None
    assert await accounts.authenticate("nobody", "correct horse") is None
    stored = await accounts.store.find_account("alice")
    assert stored is not None
    assert stored.password_hash is not None
    assert "correct horse" not in stored.password_hash


async def test_names_are_unique_and_valid(accounts: AccountService) -> None:
    await accounts.create_user("bob", "pw")
    with pytest.raises(NameTaken):
        await accounts.create_organization("bob")
    for bad in ("Bob", "a/b", "../x", "x" * 65, "robot+name"):
        with pytest.raises(ValueError, match="invalid account name"):
            await accounts.create_user(bad, "pw")


async def test_organizations_teams_and_repository_roles(accounts: AccountService) -> None:
    store = accounts.store
    alice_id = await accounts.create_user("alice", "pw")
    bob_id = await accounts.create_user("bob", "pw")
    carol_id = await accounts.create_user("carol", "pw")
    alice, bob, carol = Actor(alice_id, "alice"), Actor(bob_id, "bob"), Actor(carol_id, "carol")
    acme = await accounts.create_organization("acme")
    owners = await store.create_team(acme, "owners", "admin")
    builders = await store.create_team(acme, "builders", "creator")
    readers = await store.create_team(acme, "readers", "member")
    await store.add_member(owners, alice_id)
    await store.add_member(builders, bob_id)
    await store.add_member(readers, carol_id)
    await store.grant("acme/api", "read", team_id=readers)

    assert await can(accounts, alice, "acme/anything") == {"pull", "push", "delete"}
    assert await can(accounts, bob, "acme/new-service") == {"pull", "push"}  # may create
    assert await can(accounts, bob, "acme/api") == set()  # exists: needs a permission
    assert await can(accounts, carol, "acme/api") == {"pull"}
    assert await can(accounts, carol, "acme/other") == set()
    assert await can(accounts, ANONYMOUS, "acme/api") == set()  # private by default

    await store.grant("acme/api", "write", account_id=carol_id)
    assert await can(accounts, carol, "acme/api") == {"pull", "push"}
    await store.grant("acme/api", "read", account_id=carol_id)  # replaces, never duplicates
    assert await can(accounts, carol, "acme/api") == {"pull"}

    await store.set_public("acme/api", True)
    assert await can(accounts, ANONYMOUS, "acme/api") == {"pull"}
    assert await can(accounts, bob, "acme/api") == {"pull"}

    assert await can(accounts, bob, "bob/tools") == {"pull", "push", "delete"}
    assert await can(accounts, alice, "bob/tools") == set()
    assert await can(accounts, alice, "ghost/repo") == set()  # no such namespace


async def test_robots_are_scoped_rotatable_and_expire(accounts: AccountService) -> None:
    store = accounts.store
    await accounts.create_organization("acme")
    robot, secret = await accounts.create_robot("acme", "ci")
    assert robot == "acme+ci"
    actor = await accounts.authenticate(robot, secret)
    assert actor is not None
    await store.grant("acme/api", "write", account_id=actor.account_id)
    assert await can(accounts, actor, "acme/api") == {"pull", "push"}
    assert await can(accounts, actor, "acme/web") == set()  # only where it was granted

    fresh = await accounts.rotate_secret(robot)
    assert await accounts.authenticate(robot, secret) is None  # the old secret, at once
    assert await accounts.authenticate(robot, fresh) is not None

    past = datetime.now(UTC) - timedelta(minutes=1)
    expired, expired_secret = await accounts.create_robot("acme", "old", expires_at=past)
    assert await accounts.authenticate(expired, expired_secret) is None
    with pytest.raises(ValueError, match="no organization"):
        await accounts.create_robot("nobody", "ci")


async def test_app_tokens_stand_in_for_passwords(accounts: AccountService) -> None:
    user_id = await accounts.create_user("dana", "real-password")
    await accounts.create_user("eve", "eves-password")
    _, token = await accounts.create_app_token("dana", "laptop podman")
    assert token.startswith("wharf_app_")
    assert (await accounts.authenticate("dana", token)) == Actor(user_id, "dana")
    assert await accounts.authenticate("eve", token) is None  # someone else's token
    assert await accounts.authenticate("dana", token[:-2] + "xx") is None

    (listed,) = await accounts.store.app_tokens(user_id)
    assert listed.name == "laptop podman"
    assert listed.last_used_at is not None
    assert token.rsplit("_", 1)[1] not in listed.secret_hash  # only its hash is kept

    assert await accounts.revoke_app_token("dana", listed.id)
    assert await accounts.authenticate("dana", token) is None  # at once, despite the cache
    assert await accounts.authenticate("dana", "real-password") is not None
