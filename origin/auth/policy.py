"""Who may do what to a repository: one pure function over the facts that decide it.

Roles on a repository: ``read`` (pull), ``write`` (pull, push), ``admin`` (also delete), held by
a user or robot directly or through a team. Team roles in an organization: ``member`` (only
what repository permissions give), ``creator`` (may also create repositories), ``admin``
(everything in the organization). A user owns the namespace of their own name. Public
repositories may be pulled by anyone; nobody anonymous ever pushes or deletes.
"""

from __future__ import annotations

from dataclasses import dataclass

PULL, PUSH, DELETE = "pull", "push", "delete"
ALL = frozenset({PULL, PUSH, DELETE})
NOTHING: frozenset[str] = frozenset()
ROLE_ACTIONS = {
    "read": frozenset({PULL}),
    "write": frozenset({PULL, PUSH}),
    "admin": ALL,
}
TEAM_ROLES = frozenset({"member", "creator", "admin"})


@dataclass(frozen=True, slots=True)
class Actor:
    account_id: int | None  # None: anonymous
    name: str | None = None
    is_admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.account_id is None


ANONYMOUS = Actor(None)


@dataclass(frozen=True, slots=True)
class RepositoryFacts:
    exists: bool
    public: bool
    namespace_kind: str | None  # "user" | "organization" | None (no such account)
    namespace_id: int | None
    roles: frozenset[str]  # the actor's roles on the repository, direct or through teams
    org_roles: frozenset[str]  # the actor's team roles in the organization owning it


def allowed_actions(actor: Actor, facts: RepositoryFacts) -> frozenset[str]:
    if actor.is_admin:
        return ALL
    granted = {PULL} if facts.exists and facts.public else set()
    if actor.anonymous:
        return frozenset(granted)
    if facts.namespace_kind == "user" and facts.namespace_id == actor.account_id:
        return ALL
    if facts.namespace_kind == "organization":
        if "admin" in facts.org_roles:
            return ALL
        if not facts.exists and "creator" in facts.org_roles:
            granted |= {PULL, PUSH}
    for role in facts.roles:
        granted |= ROLE_ACTIONS.get(role, NOTHING)
    return frozenset(granted)
