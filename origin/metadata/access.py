"""Queries over accounts, teams and repository permissions: the facts access decisions need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from origin.auth.policy import RepositoryFacts
from origin.metadata.models import (
    accounts,
    app_tokens,
    repositories,
    repository_permissions,
    team_members,
    teams,
)


class NameTaken(Exception):
    """An account or team of that name exists already."""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    kind: str
    password_hash: str | None
    is_admin: bool
    expires_at: datetime | None
    disabled_at: datetime | None
    provider: str | None
    email: str | None
    owner_id: int | None
    created_at: datetime


_ACCOUNT_COLUMNS = (
    accounts.c.id,
    accounts.c.name,
    accounts.c.kind,
    accounts.c.password_hash,
    accounts.c.is_admin,
    accounts.c.expires_at,
    accounts.c.disabled_at,
    accounts.c.provider,
    accounts.c.email,
    accounts.c.owner_id,
    accounts.c.created_at,
)


@dataclass(frozen=True, slots=True)
class Team:
    id: int
    organization_id: int
    name: str
    role: str
    external_group: str | None


@dataclass(frozen=True, slots=True)
class Permission:
    kind: str  # "account" | "team"
    subject: str  # the account's or the team's name
    role: str


@dataclass(frozen=True, slots=True)
class AppToken:
    id: int
    account_id: int
    name: str
    kind: str
    secret_hash: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class AccessStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_account(
        self,
        name: str,
        kind: str,
        *,
        password_hash: str | None = None,
        is_admin: bool = False,
        owner_id: int | None = None,
        provider: str | None = None,
        expires_at: datetime | None = None,
        email: str | None = None,
    ) -> int:
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    insert(accounts).values(
                        name=name,
                        kind=kind,
                        password_hash=password_hash,
                        is_admin=is_admin,
                        owner_id=owner_id,
                        provider=provider,
                        expires_at=expires_at,
                        email=email,
                    )
                )
        except IntegrityError:
            raise NameTaken(name) from None
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    async def find_account(self, name: str) -> Account | None:
        query = select(*_ACCOUNT_COLUMNS).where(accounts.c.name == name)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return Account(*row) if row else None

    async def find_account_by_id(self, account_id: int) -> Account | None:
        query = select(*_ACCOUNT_COLUMNS).where(accounts.c.id == account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return Account(*row) if row else None

    async def list_accounts(
        self, kind: str, *, owner_id: int | None = None, limit: int = 1000, after: str = ""
    ) -> list[Account]:
        query = (
            select(*_ACCOUNT_COLUMNS)
            .where(accounts.c.kind == kind, accounts.c.name > after)
            .order_by(accounts.c.name)
            .limit(limit)
        )
        if owner_id is not None:
            query = query.where(accounts.c.owner_id == owner_id)
        async with self.engine.connect() as conn:
            return [Account(*row) for row in await conn.execute(query)]

    async def update_account(self, account_id: int, **values: object) -> None:
        """Set columns of one account (is_admin, disabled_at, email, provider, password_hash)."""
        async with self.engine.begin() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == account_id).values(values))

    async def delete_account(self, account_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(accounts).where(accounts.c.id == account_id))

    async def set_password_hash(self, account_id: int, password_hash: str) -> None:
        await self.update_account(account_id, password_hash=password_hash)

    async def create_app_token(
        self,
        account_id: int,
        name: str,
        secret_hash: str,
        *,
        kind: str = "app",
        expires_at: datetime | None = None,
    ) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(app_tokens).values(
                    account_id=account_id,
                    name=name,
                    kind=kind,
                    secret_hash=secret_hash,
                    expires_at=expires_at,
                )
            )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    async def app_tokens(self, account_id: int) -> list[AppToken]:
        """The account's app and refresh tokens, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(*app_tokens.c)
                .where(app_tokens.c.account_id == account_id)
                .order_by(app_tokens.c.id)
            )
            return [AppToken(*row) for row in rows]

    async def app_token(self, token_id: int) -> AppToken | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(*app_tokens.c).where(app_tokens.c.id == token_id))
            ).one_or_none()
        return AppToken(*row) if row else None

    async def touch_app_token(self, token_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(app_tokens)
                .where(app_tokens.c.id == token_id)
                .values(last_used_at=func.now())
            )

    async def revoke_app_token(self, account_id: int, token_id: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(app_tokens)
                .where(
                    app_tokens.c.id == token_id,
                    app_tokens.c.account_id == account_id,
                    app_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=func.now())
            )
            return result.rowcount == 1

    async def create_team(
        self, organization_id: int, name: str, role: str, external_group: str | None = None
    ) -> int:
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    insert(teams).values(
                        organization_id=organization_id,
                        name=name,
                        role=role,
                        external_group=external_group,
                    )
                )
        except IntegrityError:
            raise NameTaken(name) from None
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    async def find_team(self, organization_id: int, name: str) -> Team | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(*teams.c).where(
                        teams.c.organization_id == organization_id, teams.c.name == name
                    )
                )
            ).one_or_none()
        return Team(*row) if row else None

    async def list_teams(self, organization_id: int) -> list[Team]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(*teams.c)
                .where(teams.c.organization_id == organization_id)
                .order_by(teams.c.name)
            )
            return [Team(*row) for row in rows]

    async def update_team(self, team_id: int, **values: object) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(teams).where(teams.c.id == team_id).values(values))

    async def delete_team(self, team_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(teams).where(teams.c.id == team_id))

    async def team_members(self, team_id: int) -> list[str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(accounts.c.name)
                .join(team_members, team_members.c.account_id == accounts.c.id)
                .where(team_members.c.team_id == team_id)
                .order_by(accounts.c.name)
            )
            return list(rows.scalars())

    async def add_member(self, team_id: int, account_id: int) -> bool:
        """Add a member; False when they were one already."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(team_members).values(team_id=team_id, account_id=account_id)
                )
        except IntegrityError:
            return False
        return True

    async def remove_member(self, team_id: int, account_id: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(team_members).where(
                    team_members.c.team_id == team_id, team_members.c.account_id == account_id
                )
            )
            return result.rowcount == 1

    async def sync_groups(self, account_id: int, groups: frozenset[str]) -> None:
        """Team sync: the account is in exactly the synced teams whose group it is in."""
        async with self.engine.begin() as conn:
            synced = (
                await conn.execute(
                    select(teams.c.id, teams.c.external_group).where(
                        teams.c.external_group.is_not(None)
                    )
                )
            ).all()
            current = set(
                (
                    await conn.execute(
                        select(team_members.c.team_id).where(
                            team_members.c.account_id == account_id
                        )
                    )
                ).scalars()
            )
            for team_id, group in synced:
                if group in groups and team_id not in current:
                    await conn.execute(
                        insert(team_members).values(team_id=team_id, account_id=account_id)
                    )
                elif group not in groups and team_id in current:
                    await conn.execute(
                        delete(team_members).where(
                            team_members.c.team_id == team_id,
                            team_members.c.account_id == account_id,
                        )
                    )

    async def organization_roles(self, account_id: int, organization_id: int) -> set[str]:
        """The roles of the teams of ``organization_id`` that the account is in."""
        async with self.engine.connect() as conn:
            return set(
                (
                    await conn.execute(
                        select(teams.c.role)
                        .join(team_members, team_members.c.team_id == teams.c.id)
                        .where(
                            teams.c.organization_id == organization_id,
                            team_members.c.account_id == account_id,
                        )
                    )
                ).scalars()
            )

    async def _repository_id(self, conn: AsyncConnection, name: str) -> int:
        """The repository's id, creating it (private) if it does not exist yet."""
        found = (
            await conn.execute(select(repositories.c.id).where(repositories.c.name == name))
        ).scalar_one_or_none()
        if found is not None:
            return int(found)
        result = await conn.execute(insert(repositories).values(name=name))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    async def grant(
        self,
        repository: str,
        role: str,
        *,
        account_id: int | None = None,
        team_id: int | None = None,
    ) -> None:
        """Give an account or a team ``role`` on ``repository`` (replacing an earlier one)."""
        async with self.engine.begin() as conn:
            repo_id = await self._repository_id(conn, repository)
            subject = (
                repository_permissions.c.account_id == account_id
                if account_id is not None
                else repository_permissions.c.team_id == team_id
            )
            changed = await conn.execute(
                update(repository_permissions)
                .where(repository_permissions.c.repository_id == repo_id, subject)
                .values(role=role)
            )
            if changed.rowcount == 0:
                await conn.execute(
                    insert(repository_permissions).values(
                        repository_id=repo_id, account_id=account_id, team_id=team_id, role=role
                    )
                )

    async def revoke(
        self, repository: str, *, account_id: int | None = None, team_id: int | None = None
    ) -> bool:
        async with self.engine.begin() as conn:
            repo_id = (
                await conn.execute(
                    select(repositories.c.id).where(repositories.c.name == repository)
                )
            ).scalar_one_or_none()
            if repo_id is None:
                return False
            subject = (
                repository_permissions.c.account_id == account_id
                if account_id is not None
                else repository_permissions.c.team_id == team_id
            )
            result = await conn.execute(
                delete(repository_permissions).where(
                    repository_permissions.c.repository_id == repo_id, subject
                )
            )
            return result.rowcount == 1

    async def permissions(self, repository: str) -> list[Permission]:
        """Who holds which role on the repository, accounts first, by name."""
        perms = repository_permissions
        base = (
            select(perms.c.role)
            .select_from(perms)
            .join(repositories, repositories.c.id == perms.c.repository_id)
            .where(repositories.c.name == repository)
        )
        by_account = base.add_columns(accounts.c.name).join(
            accounts, accounts.c.id == perms.c.account_id
        )
        by_team = base.add_columns(teams.c.name).join(teams, teams.c.id == perms.c.team_id)
        async with self.engine.connect() as conn:
            found = [
                Permission("account", name, role)
                for role, name in await conn.execute(by_account.order_by(accounts.c.name))
            ]
            found += [
                Permission("team", name, role)
                for role, name in await conn.execute(by_team.order_by(teams.c.name))
            ]
        return found

    async def is_public(self, repository: str) -> bool | None:
        """Whether the repository is public; None when it does not exist."""
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(repositories.c.public).where(repositories.c.name == repository)
                )
            ).scalar_one_or_none()
        return None if found is None else bool(found)

    async def set_public(self, repository: str, public: bool) -> None:
        async with self.engine.begin() as conn:
            repo_id = await self._repository_id(conn, repository)
            await conn.execute(
                update(repositories).where(repositories.c.id == repo_id).values(public=public)
            )

    async def repository_facts(self, actor_id: int | None, repository: str) -> RepositoryFacts:
        namespace = repository.split("/", 1)[0] if "/" in repository else None
        async with self.engine.connect() as conn:
            owner = None
            if namespace is not None:
                owner = (
                    await conn.execute(
                        select(accounts.c.id, accounts.c.kind).where(accounts.c.name == namespace)
                    )
                ).one_or_none()
            repo = (
                await conn.execute(
                    select(repositories.c.id, repositories.c.public).where(
                        repositories.c.name == repository
                    )
                )
            ).one_or_none()
            roles: set[str] = set()
            org_roles: set[str] = set()
            if actor_id is not None and repo is not None:
                my_teams = select(team_members.c.team_id).where(
                    team_members.c.account_id == actor_id
                )
                direct = select(repository_permissions.c.role).where(
                    repository_permissions.c.repository_id == repo.id,
                    repository_permissions.c.account_id == actor_id,
                )
                via_teams = select(repository_permissions.c.role).where(
                    repository_permissions.c.repository_id == repo.id,
                    repository_permissions.c.team_id.in_(my_teams),
                )
                roles = set((await conn.execute(union(direct, via_teams))).scalars())
            if actor_id is not None and owner is not None and owner.kind == "organization":
                org_roles = set(
                    (
                        await conn.execute(
                            select(teams.c.role)
                            .join(team_members, team_members.c.team_id == teams.c.id)
                            .where(
                                teams.c.organization_id == owner.id,
                                team_members.c.account_id == actor_id,
                            )
                        )
                    ).scalars()
                )
        return RepositoryFacts(
            exists=repo is not None,
            public=bool(repo.public) if repo is not None else False,
            namespace_kind=owner.kind if owner is not None else None,
            namespace_id=owner.id if owner is not None else None,
            roles=frozenset(roles),
            org_roles=frozenset(org_roles),
        )
