"""Users (system admins manage them) and each user's own app tokens."""

from __future__ import annotations

from datetime import UTC, datetime

from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller, Management
from origin.auth.accounts import APP_TOKEN_PREFIX
from origin.metadata.access import Account, AppToken, NameTaken


def _future(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if aware <= datetime.now(UTC):
        raise OCIError(ErrorCode.INVALID_REQUEST, "expires_at must be in the future")
    return aware


class People(Management):
    async def user(self, caller: Caller, name: str) -> Account:
        if not caller.actor.is_admin and caller.actor.name != name:
            raise self.denied(caller, "user.read", "only admins may read other accounts")
        found = await self.store.find_account(name)
        if found is None or found.kind != "user":
            raise OCIError(ErrorCode.NOT_FOUND, f"no user {name!r}")
        return found

    async def list_users(self, caller: Caller, after: str, limit: int) -> list[Account]:
        self.require_admin(caller, "user.list")
        return await self.store.list_accounts("user", after=after, limit=limit)

    async def create_user(self, caller: Caller, name: str, password: str, admin: bool) -> Account:
        self.require_admin(caller, "user.create")
        try:
            await self.accounts.create_user(name, password, is_admin=admin)
        except NameTaken:
            raise OCIError(ErrorCode.CONFLICT, f"the name {name!r} is taken") from None
        self.record(caller, "user.create", detail={"user": name, "admin": admin})
        return await self.user(caller, name)

    async def update_user(
        self,
        caller: Caller,
        name: str,
        *,
        admin: bool | None,
        disabled: bool | None,
        password: str | None,
        current_password: str | None = None,
    ) -> Account:
        is_self = caller.actor.name == name
        if not caller.actor.is_admin and not (is_self and admin is None and disabled is None):
            raise self.denied(caller, "user.update", "only admins may change other accounts")
        if is_self and (disabled or admin is False):
            # Nobody locks themselves out; another admin can do it if it must be done.
            raise self.denied(caller, "user.update", "you cannot disable or demote yourself")
        if (
            is_self
            and password is not None
            and (
                current_password is None
                or current_password.startswith(APP_TOKEN_PREFIX)  # the password itself, no stand-in
                or await self.accounts.authenticate(name, current_password) is None
            )
        ):
            raise self.denied(caller, "user.update", "current_password is wrong or missing")
        found = await self.user(caller, name)
        values: dict[str, object] = {}
        if admin is not None:
            values["is_admin"] = admin
        if disabled is not None:
            values["disabled_at"] = datetime.now(UTC) if disabled else None
        if values:
            await self.store.update_account(found.id, **values)
        if password is not None:
            try:
                await self.accounts.set_password(name, password)
            except ValueError as exc:
                raise OCIError(ErrorCode.INVALID_REQUEST, str(exc)) from None
        self.accounts.forget_logins()  # a disabled account must not sign in from the cache
        changes = {k: v for k, v in (("admin", admin), ("disabled", disabled)) if v is not None}
        if password is not None:
            changes["password"] = True  # that it changed, never what to
        self.record(caller, "user.update", detail={"user": name, **changes})
        return await self.user(caller, name)

    async def app_tokens(self, caller: Caller) -> list[AppToken]:
        assert caller.actor.account_id is not None
        return await self.store.app_tokens(caller.actor.account_id)

    async def create_app_token(
        self, caller: Caller, label: str, expires_at: datetime | None
    ) -> tuple[int, str]:
        account = await self.store.find_account(caller.name)
        if account is None or account.kind != "user":
            raise self.denied(caller, "apptoken.create", "only users have app tokens")
        token_id, token = await self.accounts.create_app_token(
            caller.name, label, _future(expires_at)
        )
        self.record(caller, "apptoken.create", detail={"id": token_id, "label": label})
        return token_id, token

    async def revoke_app_token(self, caller: Caller, token_id: int) -> None:
        if not await self.accounts.revoke_app_token(caller.name, token_id):
            raise OCIError(ErrorCode.NOT_FOUND, f"no live app token {token_id} of yours")
        self.record(caller, "apptoken.revoke", detail={"id": token_id})
