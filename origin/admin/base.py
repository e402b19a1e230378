"""Who may manage what, and the audit entry every management action leaves.

System admins manage everything. A user manages their own namespace (its robots, its
repositories). An organization is managed by the members of its ``admin`` teams. A
repository's permissions and visibility are managed by whoever may do everything to it
(its namespace's managers, and holders of its ``admin`` role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ocicore.errors import ErrorCode, OCIError
from origin.audit import AuditEvent, AuditLog
from origin.auth.accounts import AccountService
from origin.auth.policy import ALL, ANONYMOUS, Actor, allowed_actions
from origin.metadata.access import Account


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, and from where (for the audit log)."""

    actor: Actor
    client: str | None

    @classmethod
    def anonymous(cls, client: str | None) -> Caller:
        return cls(ANONYMOUS, client)

    @property
    def name(self) -> str:
        assert self.actor.name is not None
        return self.actor.name


class Management:
    def __init__(self, accounts: AccountService, audit: AuditLog) -> None:
        self.accounts = accounts
        self.store = accounts.store
        self.audit = audit

    def record(
        self,
        caller: Caller,
        action: str,
        outcome: str = "ok",
        *,
        repository: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.audit.record(
            AuditEvent(
                action,
                outcome,
                caller.actor.name,
                repository=repository,
                client=caller.client,
                detail=detail,
            )
        )

    def denied(self, caller: Caller, action: str, why: str, **detail: Any) -> OCIError:
        self.record(
            caller,
            action,
            "denied",
            repository=detail.pop("repository", None),
            detail=detail or None,
        )
        return OCIError(ErrorCode.DENIED, why)

    def require_admin(self, caller: Caller, action: str) -> None:
        if not caller.actor.is_admin:
            raise self.denied(caller, action, "only system admins may do this")

    async def namespace(self, name: str) -> Account:
        found = await self.store.find_account(name)
        if found is None or found.kind not in ("user", "organization"):
            raise OCIError(ErrorCode.NOT_FOUND, f"no user or organization {name!r}")
        return found

    async def organization(self, name: str) -> Account:
        found = await self.store.find_account(name)
        if found is None or found.kind != "organization":
            raise OCIError(ErrorCode.NOT_FOUND, f"no organization {name!r}")
        return found

    async def manages(self, caller: Caller, namespace: Account) -> bool:
        actor = caller.actor
        if actor.is_admin or actor.account_id == namespace.id:
            return True
        if namespace.kind != "organization" or actor.account_id is None:
            return False
        return "admin" in await self.store.organization_roles(actor.account_id, namespace.id)

    async def require_manager(self, caller: Caller, namespace: Account, action: str) -> None:
        if not await self.manages(caller, namespace):
            raise self.denied(
                caller, action, f"you do not manage {namespace.name!r}", namespace=namespace.name
            )

    async def require_repository(
        self, caller: Caller, repository: str, needed: str, action: str
    ) -> None:
        """Refuse (DENIED, audited) unless the caller may ``needed`` (pull, push) there."""
        facts = await self.store.repository_facts(caller.actor.account_id, repository)
        if needed not in allowed_actions(caller.actor, facts):
            raise self.denied(
                caller, action, f"you may not {needed} {repository!r}", repository=repository
            )

    async def require_repository_admin(self, caller: Caller, repository: str, action: str) -> None:
        facts = await self.store.repository_facts(caller.actor.account_id, repository)
        if allowed_actions(caller.actor, facts) != ALL:
            raise self.denied(
                caller, action, f"you do not administer {repository!r}", repository=repository
            )
