"""Accounts: users with argon2 password hashes, organizations, and who an actor is.

Password checks run in a thread (argon2 is deliberately slow) and take the same time whether
the account exists or not, so a login attempt does not reveal which names are taken.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TTLCache

from origin.auth.policy import Actor
from origin.metadata.access import AccessStore

# An account name is one component of a repository name: it is the namespace it owns.
_ACCOUNT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
MAX_ACCOUNT_LENGTH = 64
MAX_PASSWORD_LENGTH = 1024
RECENT_LOGIN_SECONDS = 60.0
APP_TOKEN_PREFIX = "wharf_app_"  # noqa: S105 - a prefix, not a secret
_APP_TOKEN = re.compile(r"^wharf_app_(\d{1,18})_([A-Za-z0-9_-]{20,100})$")


def validate_account_name(name: str) -> str:
    if len(name) > MAX_ACCOUNT_LENGTH or not _ACCOUNT.match(name):
        raise ValueError(f"invalid account name {name[:80]!r}")
    return name


class AccountService:
    def __init__(self, store: AccessStore, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash("not a password anyone has")
        # Clients ask for a token per push or pull, each with the same Basic credentials; an
        # argon2 check costs ~100 ms of CPU. A success is remembered briefly under a keyed
        # hash of the credentials (never the password itself); failures never are.
        self._recent: TTLCache[bytes, Actor] = TTLCache(maxsize=4096, ttl=RECENT_LOGIN_SECONDS)
        self._key = secrets.token_bytes(32)

    def _fingerprint(self, name: str, password: str) -> bytes:
        return hashlib.blake2b(f"{name}\0{password}".encode(), key=self._key).digest()

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

    async def create_robot(
        self, owner: str, name: str, expires_at: datetime | None = None
    ) -> tuple[str, str]:
        """A robot ``<owner>+<name>`` and its generated secret (shown once, stored hashed)."""
        found = await self.store.find_account(owner)
        if found is None or found.kind not in ("organization", "user"):
            raise ValueError(f"no organization or user {owner!r}")
        robot = f"{owner}+{validate_account_name(name)}"
        secret = secrets.token_urlsafe(32)
        digest = await asyncio.to_thread(self.hasher.hash, secret)
        await self.store.create_account(
            robot, "robot", password_hash=digest, owner_id=found.id, expires_at=expires_at
        )
        return robot, secret

    async def rotate_secret(self, robot: str) -> str:
        """A new secret for the robot; the old one stops working at once."""
        found = await self.store.find_account(robot)
        if found is None or found.kind != "robot":
            raise ValueError(f"no robot {robot!r}")
        secret = secrets.token_urlsafe(32)
        await self.store.set_password_hash(
            found.id, await asyncio.to_thread(self.hasher.hash, secret)
        )
        self._recent.clear()  # no remembered login may outlive the secret it used
        return secret

    async def create_app_token(self, user: str, label: str) -> str:
        """A new app-specific password for ``user`` (shown once; stored as its SHA-256)."""
        found = await self.store.find_account(user)
        if found is None or found.kind != "user":
            raise ValueError(f"no user {user!r}")
        secret = secrets.token_urlsafe(32)
        token_id = await self.store.create_app_token(found.id, label[:255], _sha256(secret))
        return f"{APP_TOKEN_PREFIX}{token_id}_{secret}"

    async def revoke_app_token(self, user: str, token_id: int) -> bool:
        found = await self.store.find_account(user)
        if found is None:
            return False
        revoked = await self.store.revoke_app_token(found.id, token_id)
        self._recent.clear()  # no remembered login may outlive its token
        return revoked

    async def _app_token_login(self, name: str, password: str) -> Actor | None:
        match = _APP_TOKEN.match(password)
        if match is None:
            return None
        token = await self.store.app_token(int(match[1]))
        account = await self.store.find_account(name[: MAX_ACCOUNT_LENGTH + 64])
        if token is None or account is None or token.account_id != account.id:
            return None
        if not hmac.compare_digest(token.secret_hash, _sha256(match[2])):
            return None
        if token.revoked_at is not None or account.disabled_at is not None:
            return None
        if token.expires_at is not None and _aware(token.expires_at) <= datetime.now(UTC):
            return None
        await self.store.touch_app_token(token.id)
        return Actor(account.id, account.name, account.is_admin)

    async def authenticate(self, name: str, password: str) -> Actor | None:
        """The actor for a name and a password or app token, or None.

        A password check costs the same whether the account exists or not."""
        fingerprint = self._fingerprint(name, password)
        remembered = self._recent.get(fingerprint)
        if remembered is not None:
            return remembered
        if password.startswith(APP_TOKEN_PREFIX):
            actor = await self._app_token_login(name, password)
            if actor is not None:
                self._recent[fingerprint] = actor
            return actor
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
        actor = Actor(account.id, account.name, account.is_admin)
        self._recent[fingerprint] = actor
        return actor

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
