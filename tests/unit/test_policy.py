"""The authorization policy, case by case: who may pull, push and delete."""

from __future__ import annotations

import pytest

from origin.auth.policy import ALL, ANONYMOUS, Actor, RepositoryFacts, allowed_actions

ALICE = Actor(1, "alice")
ADMIN = Actor(9, "root", is_admin=True)
ROBOT = Actor(5, "acme+ci")


def facts(
    *,
    exists: bool = True,
    public: bool = False,
    kind: str | None = "organization",
    owner: int | None = 100,
    roles: tuple[str, ...] = (),
    org_roles: tuple[str, ...] = (),
) -> RepositoryFacts:
    return RepositoryFacts(exists, public, kind, owner, frozenset(roles), frozenset(org_roles))


@pytest.mark.parametrize(
    ("actor", "repo", "expected"),
    [
        (ANONYMOUS, facts(public=True), {"pull"}),
        (ANONYMOUS, facts(public=False), set()),
        (ANONYMOUS, facts(public=True, roles=("admin",)), {"pull"}),  # never push anonymously
        (ANONYMOUS, facts(exists=False), set()),
        (ALICE, facts(), set()),
        (ALICE, facts(public=True), {"pull"}),
        (ALICE, facts(roles=("read",)), {"pull"}),
        (ALICE, facts(roles=("write",)), {"pull", "push"}),
        (ALICE, facts(roles=("read", "admin")), set(ALL)),
        (ALICE, facts(kind="user", owner=1), set(ALL)),  # her own namespace
        (ALICE, facts(kind="user", owner=2), set()),  # someone else's
        (ALICE, facts(org_roles=("member",)), set()),
        (ALICE, facts(org_roles=("creator",)), set()),  # creators create, not read others'
        (ALICE, facts(exists=False, org_roles=("creator",)), {"pull", "push"}),
        (ALICE, facts(exists=False, org_roles=("member",)), set()),
        (ALICE, facts(org_roles=("admin",)), set(ALL)),
        (ALICE, facts(kind=None, owner=None, exists=False), set()),  # no such namespace
        (ROBOT, facts(roles=("write",)), {"pull", "push"}),
        (ROBOT, facts(), set()),
        (ADMIN, facts(kind=None, owner=None, exists=False), set(ALL)),
    ],
)
def test_allowed_actions(actor: Actor, repo: RepositoryFacts, expected: set[str]) -> None:
    assert allowed_actions(actor, repo) == expected
