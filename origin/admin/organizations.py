"""Organizations, their teams and members, and the robots of any namespace."""

from __future__ import annotations

from datetime import datetime

from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller, Management
from origin.admin.people import _future
from origin.metadata.access import Account, NameTaken, Team

OWNERS = "owners"


class Organizations(Management):
    async def create(self, caller: Caller, name: str) -> Account:
        """A new organization; its creator (a user) becomes the first member of ``owners``."""
        creator = await self.store.find_account(caller.name)
        if creator is None or creator.kind != "user":
            raise self.denied(caller, "org.create", "only users create organizations")
        try:
            org_id = await self.accounts.create_organization(name)
        except NameTaken:
            raise OCIError(ErrorCode.CONFLICT, f"the name {name!r} is taken") from None
        team = await self.store.create_team(org_id, OWNERS, "admin")
        await self.store.add_member(team, creator.id)
        self.record(caller, "org.create", detail={"organization": name})
        return await self.organization(name)

    async def show(self, caller: Caller, name: str) -> tuple[Account, list[tuple[Team, list[str]]]]:
        org = await self.organization(name)
        actor = caller.actor
        member = actor.is_admin or (
            actor.account_id is not None
            and bool(await self.store.organization_roles(actor.account_id, org.id))
        )
        if not member:
            raise self.denied(caller, "org.read", f"you are not in {name!r}")
        teams = await self.store.list_teams(org.id)
        return org, [(team, await self.store.team_members(team.id)) for team in teams]

    async def _team(self, org: Account, name: str) -> Team:
        team = await self.store.find_team(org.id, name)
        if team is None:
            raise OCIError(ErrorCode.NOT_FOUND, f"no team {name!r} in {org.name!r}")
        return team

    async def create_team(
        self, caller: Caller, org_name: str, name: str, role: str, external_group: str | None
    ) -> tuple[Team, list[str]]:
        org = await self.organization(org_name)
        await self.require_manager(caller, org, "team.create")
        try:
            await self.store.create_team(org.id, name, role, external_group)
        except NameTaken:
            raise OCIError(ErrorCode.CONFLICT, f"team {name!r} exists") from None
        self.record(
            caller,
            "team.create",
            detail={"organization": org.name, "team": name, "role": role, "group": external_group},
        )
        return await self._team(org, name), []

    async def update_team(
        self,
        caller: Caller,
        org_name: str,
        name: str,
        role: str | None,
        external_group: str | None,
    ) -> tuple[Team, list[str]]:
        org = await self.organization(org_name)
        await self.require_manager(caller, org, "team.update")
        team = await self._team(org, name)
        values = {
            k: v for k, v in (("role", role), ("external_group", external_group)) if v is not None
        }
        if values:
            await self.store.update_team(team.id, **values)
        self.record(
            caller, "team.update", detail={"organization": org.name, "team": name, **values}
        )
        return await self._team(org, name), await self.store.team_members(team.id)

    async def delete_team(self, caller: Caller, org_name: str, name: str) -> None:
        org = await self.organization(org_name)
        await self.require_manager(caller, org, "team.delete")
        team = await self._team(org, name)
        await self.store.delete_team(team.id)
        self.record(caller, "team.delete", detail={"organization": org.name, "team": name})

    async def _member(self, org: Account, name: str) -> Account:
        """A user, or a robot of this organization: nobody else's robot joins its teams."""
        found = await self.store.find_account(name)
        if found is None or not (
            found.kind == "user" or (found.kind == "robot" and found.owner_id == org.id)
        ):
            raise OCIError(ErrorCode.NOT_FOUND, f"no user or robot of {org.name!r} named {name!r}")
        return found

    async def set_member(
        self, caller: Caller, org_name: str, team_name: str, member: str, present: bool
    ) -> None:
        action = "team.member.add" if present else "team.member.remove"
        org = await self.organization(org_name)
        await self.require_manager(caller, org, action)
        team = await self._team(org, team_name)
        account = await self._member(org, member)
        if present:
            changed = await self.store.add_member(team.id, account.id)
        else:
            changed = await self.store.remove_member(team.id, account.id)
            if not changed:
                raise OCIError(ErrorCode.NOT_FOUND, f"{member!r} is not in {team_name!r}")
        if changed:
            self.record(
                caller,
                action,
                detail={"organization": org.name, "team": team_name, "member": member},
            )

    async def robots(self, caller: Caller, namespace: str) -> list[Account]:
        owner = await self.namespace(namespace)
        await self.require_manager(caller, owner, "robot.list")
        return await self.store.list_accounts("robot", owner_id=owner.id)

    async def create_robot(
        self, caller: Caller, namespace: str, name: str, expires_at: datetime | None
    ) -> tuple[Account, str]:
        owner = await self.namespace(namespace)
        await self.require_manager(caller, owner, "robot.create")
        try:
            robot, secret = await self.accounts.create_robot(owner.name, name, _future(expires_at))
        except NameTaken:
            raise OCIError(ErrorCode.CONFLICT, f"robot {namespace}+{name} exists") from None
        self.record(caller, "robot.create", detail={"robot": robot})
        found = await self.store.find_account(robot)
        assert found is not None
        return found, secret

    async def _robot(self, owner: Account, name: str) -> Account:
        found = await self.store.find_account(f"{owner.name}+{name}")
        if found is None or found.kind != "robot" or found.owner_id != owner.id:
            raise OCIError(ErrorCode.NOT_FOUND, f"no robot {owner.name}+{name}")
        return found

    async def rotate_robot(self, caller: Caller, namespace: str, name: str) -> tuple[Account, str]:
        owner = await self.namespace(namespace)
        await self.require_manager(caller, owner, "robot.rotate")
        robot = await self._robot(owner, name)
        secret = await self.accounts.rotate_secret(robot.name)
        self.record(caller, "robot.rotate", detail={"robot": robot.name})
        return robot, secret

    async def delete_robot(self, caller: Caller, namespace: str, name: str) -> None:
        owner = await self.namespace(namespace)
        await self.require_manager(caller, owner, "robot.delete")
        robot = await self._robot(owner, name)
        await self.store.delete_account(robot.id)
        self.accounts.forget_logins()
        self.record(caller, "robot.delete", detail={"robot": robot.name})
