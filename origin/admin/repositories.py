"""Who holds which role on a repository, and whether anyone may pull it."""

from __future__ import annotations

from ocicore.errors import ErrorCode, OCIError
from ocicore.names import validate_name
from origin.admin.base import Caller, Management
from origin.metadata.access import Permission


class Repositories(Management):
    async def access(self, caller: Caller, repository: str) -> tuple[bool, list[Permission]]:
        validate_name(repository)
        await self.require_repository_admin(caller, repository, "permission.read")
        public = await self.store.is_public(repository)
        return bool(public), await self.store.permissions(repository)

    async def set_visibility(self, caller: Caller, repository: str, public: bool) -> None:
        """Make a repository public or private (creating it empty, so that its settings can be
        made before its first push)."""
        validate_name(repository)
        await self.require_repository_admin(caller, repository, "visibility.set")
        await self.store.set_public(repository, public)
        self.record(caller, "visibility.set", repository=repository, detail={"public": public})

    async def _subject(
        self, repository: str, kind: str, subject: str
    ) -> tuple[int | None, int | None]:
        """(account id, team id) of a permission's holder. Teams belong to the repository's
        organization; accounts are users or robots."""
        if kind == "teams":
            org = await self.organization(repository.split("/", 1)[0])
            team = await self.store.find_team(org.id, subject)
            if team is None:
                raise OCIError(ErrorCode.NOT_FOUND, f"no team {subject!r} in {org.name!r}")
            return None, team.id
        found = await self.store.find_account(subject)
        if found is None or found.kind not in ("user", "robot"):
            raise OCIError(ErrorCode.NOT_FOUND, f"no user or robot {subject!r}")
        return found.id, None

    async def set_permission(
        self, caller: Caller, repository: str, kind: str, subject: str, role: str | None
    ) -> None:
        """Give ``subject`` ``role`` on the repository, or (role None) take its role away."""
        validate_name(repository)
        action = "permission.set" if role else "permission.remove"
        await self.require_repository_admin(caller, repository, action)
        account_id, team_id = await self._subject(repository, kind, subject)
        if role is not None:
            await self.store.grant(repository, role, account_id=account_id, team_id=team_id)
        elif not await self.store.revoke(repository, account_id=account_id, team_id=team_id):
            raise OCIError(ErrorCode.NOT_FOUND, f"{subject!r} holds no role on {repository!r}")
        self.record(
            caller,
            action,
            repository=repository,
            detail={"kind": kind.rstrip("s"), "subject": subject, "role": role},
        )
