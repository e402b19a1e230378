"""Accounts: users with argon2 password hashes, organizations, and who an actor is.

Password checks run in a thread (argon2 is deliberately slow) and take the same time whether
the account exists or not, so a login attempt does not reveal which names are taken.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from origin.auth.policy import Actor
from origin.metadata.access import AccessStore

# An account name is one component of a repository name: it is the namespace it owns.
_ACCOUNT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
MAX_ACCOUNT_LENGTH = 64
MAX_PASSWORD_LENGTH = 1024


def validate_account_name(name: str) -> str:
    if len(name) > MAX_ACCOUNT_LENGTH or not _ACCOUNT.match(name):
        raise ValueError(f"invalid account name {name[:80]!r}")
    return name


class AccountService:
    def __init__(self, store: AccessStore, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash("not a password anyone has")

    async def create_user(self, name: str, password: str, *, is_admin: bool = False) -> int:
        validate_account_name(name)
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError("password must be 1 to 1024 characters")
        digest = await asyncio.to_thread(self.hasher.hash, password)
        return await self.store.create_account(
            name, "user", password_hash=digest, is_admin=is_admin, provider="local"
        )

    async def create_organization(self, name: str) -> int:
        return await self.store.create_account(validate_account_name(name), "organization")

    async def authenticate(self, name: str, password: str) -> Actor | None:
        """The actor for a name and password, or None (same cost either way)."""
        account = await self.store.find_account(name[: MAX_ACCOUNT_LENGTH + 64])
        usable = (
            account is not None
            and account.kind in ("user", "robot")
            and account.password_hash is not None
            and account.disabled_at is None
            and (account.expires_at is None or _aware(account.expires_at) > datetime.now(UTC))
        )
        stored = account.password_hash if usable and account is not None else self._dummy
        assert stored is not None
        ok = await asyncio.to_thread(self._verify, stored, password[:MAX_PASSWORD_LENGTH])
        if not (ok and usable and account is not None):
            return None
        return Actor(account.id, account.name, account.is_admin)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
