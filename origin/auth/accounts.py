"""Accounts: users with argon2 password hashes, organizations, and who an actor is.

Password checks run in a thread (argon2 is deliberately slow) and take the same time whether
the account exists or not, so a login attempt does not reveal which names are taken.

Users come from one provider each: ``local`` (a password hash here), ``ldap`` (the password is
checked by binding to the directory) or ``oidc`` (signed in through the identity provider). A
user from LDAP or OIDC is provisioned on first sign-in and is a Wharf user like any other; their
groups decide their synced teams at every sign-in. A name taken by one provider is never
handed to another, so a directory cannot take over a local account.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TTLCache

from origin.auth.identity import ExternalIdentity
from origin.auth.policy import Actor
from origin.metadata.access import AccessStore, Account, AppToken, NameTaken

# An account name is one component of a repository name: it is the namespace it owns.
_ACCOUNT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
MAX_ACCOUNT_LENGTH = 64
MAX_PASSWORD_LENGTH = 1024
RECENT_LOGIN_SECONDS = 60.0
TOUCH_EVERY = timedelta(minutes=1)
APP_TOKEN_PREFIX = "wharf_app_"  # noqa: S105 - a prefix, not a secret
REFRESH_TOKEN_PREFIX = "wharf_rt_"  # noqa: S105 - a prefix, not a secret
_APP_TOKEN = re.compile(r"^wharf_app_(\d{1,18})_([A-Za-z0-9_-]{20,100})$")
_REFRESH_TOKEN = re.compile(r"^wharf_rt_(\d{1,18})_([A-Za-z0-9_-]{20,100})$")


class PasswordProvider(Protocol):
    """A directory that checks passwords itself (LDAP)."""

    async def authenticate(self, name: str, password: str) -> ExternalIdentity | None: ...


class ProviderConflict(Exception):
    """The name belongs to an account of another provider (or to a non-user)."""


def validate_account_name(name: str) -> str:
    if len(name) > MAX_ACCOUNT_LENGTH or not _ACCOUNT.match(name):
        raise ValueError(f"invalid account name {name[:80]!r}")
    return name


class AccountService:
    def __init__(
        self,
        store: AccessStore,
        hasher: PasswordHasher | None = None,
        directory: PasswordProvider | None = None,
        refresh_ttl_seconds: float = 30 * 24 * 3600.0,
    ) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self.directory = directory
        self.refresh_ttl_seconds = refresh_ttl_seconds
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
        _check_password(password)
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
        self.forget_logins()  # no remembered login may outlive the secret it used
        return secret

    async def create_app_token(
        self, user: str, label: str, expires_at: datetime | None = None
    ) -> tuple[int, str]:
        """A new app-specific password for ``user``: its id, and the token (shown once;
        stored as its SHA-256)."""
        found = await self.store.find_account(user)
        if found is None or found.kind != "user":
            raise ValueError(f"no user {user!r}")
        secret = secrets.token_urlsafe(32)
        token_id = await self.store.create_app_token(
            found.id, label[:255], _sha256(secret), expires_at=expires_at
        )
        return token_id, f"{APP_TOKEN_PREFIX}{token_id}_{secret}"

    async def issue_refresh_token(self, actor: Actor, client_id: str) -> str:
        """A long-lived token the client trades for access tokens without the password."""
        assert actor.account_id is not None
        secret = secrets.token_urlsafe(32)
        expires = datetime.fromtimestamp(
            datetime.now(UTC).timestamp() + self.refresh_ttl_seconds, UTC
        )
        token_id = await self.store.create_app_token(
            actor.account_id, client_id[:255], _sha256(secret), kind="refresh", expires_at=expires
        )
        return f"{REFRESH_TOKEN_PREFIX}{token_id}_{secret}"

    async def refresh(self, token: str) -> Actor | None:
        """The actor a refresh token stands for, while it and its account are usable."""
        match = _REFRESH_TOKEN.match(token)
        if match is None:
            return None
        return await self._token_login(int(match[1]), match[2], "refresh", None)

    async def revoke_app_token(self, user: str, token_id: int) -> bool:
        found = await self.store.find_account(user)
        if found is None:
            return False
        revoked = await self.store.revoke_app_token(found.id, token_id)
        self.forget_logins()  # no remembered login may outlive its token
        return revoked

    async def _token_login(
        self, token_id: int, secret: str, kind: str, name: str | None
    ) -> Actor | None:
        token = await self.store.app_token(token_id)
        if token is None or token.kind != kind:
            return None
        account = await self.store.find_account_by_id(token.account_id)
        if account is None or (name is not None and account.name != name):
            return None
        if not hmac.compare_digest(token.secret_hash, _sha256(secret)):
            return None
        if token.revoked_at is not None or not _usable(account) or _expired(token):
            return None
        last = token.last_used_at
        if last is None or datetime.now(UTC) - _aware(last) > TOUCH_EVERY:
            # "Last used" to the minute: a write per use would cost a disk sync per token.
            await self.store.touch_app_token(token.id)
        return Actor(account.id, account.name, account.is_admin)

    async def usable_actor(self, name: str) -> Actor | None:
        """The actor of a user or robot that may sign in now (for a replicator acting as it)."""
        account = await self.store.find_account(name)
        if account is None or account.kind not in ("user", "robot") or not _usable(account):
            return None
        return Actor(account.id, account.name, account.is_admin)

    async def _app_token_login(self, name: str, password: str) -> Actor | None:
        match = _APP_TOKEN.match(password)
        if match is None:
            return None
        return await self._token_login(int(match[1]), match[2], "app", name)

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
        if self.directory is not None and (account is None or account.provider == "ldap"):
            return await self._directory_login(name, password, fingerprint)
        usable = (
            account is not None
            and account.kind in ("user", "robot")
            and account.password_hash is not None
            and _usable(account)
        )
        stored = account.password_hash if usable and account is not None else self._dummy
        assert stored is not None
        ok = await asyncio.to_thread(self._verify, stored, password[:MAX_PASSWORD_LENGTH])
        if not (ok and usable and account is not None):
            return None
        actor = Actor(account.id, account.name, account.is_admin)
        self._recent[fingerprint] = actor
        return actor

    async def _directory_login(self, name: str, password: str, fingerprint: bytes) -> Actor | None:
        assert self.directory is not None
        identity = await self.directory.authenticate(name, password)
        if identity is None:
            return None
        try:
            actor = await self.sign_in(identity)
        except ProviderConflict:
            return None
        if actor is not None:
            self._recent[fingerprint] = actor
        return actor

    async def sign_in(self, identity: ExternalIdentity) -> Actor | None:
        """The Wharf user for an identity LDAP or OIDC vouched for: provisioned on first
        sign-in, email and synced teams refreshed on every one; None when disabled."""
        name = validate_account_name(identity.name)
        account = await self.store.find_account(name)
        if account is None:
            # A concurrent first sign-in may win the race: the checks below apply to it.
            with contextlib.suppress(NameTaken):
                await self.store.create_account(
                    name, "user", provider=identity.provider, email=identity.email
                )
            account = await self.store.find_account(name)
            assert account is not None
        if account.kind != "user" or account.provider != identity.provider:
            raise ProviderConflict(name)
        if not _usable(account):
            return None
        if identity.email != account.email:
            await self.store.update_account(account.id, email=identity.email)
        await self.store.sync_groups(account.id, identity.groups)
        return Actor(account.id, account.name, account.is_admin)

    async def set_password(self, user: str, password: str) -> None:
        found = await self.store.find_account(user)
        if found is None or found.kind != "user" or found.provider != "local":
            raise ValueError(f"no local user {user!r}")
        _check_password(password)
        await self.store.set_password_hash(
            found.id, await asyncio.to_thread(self.hasher.hash, password)
        )
        self.forget_logins()

    def forget_logins(self) -> None:
        """Drop remembered logins: after any change that may revoke one."""
        self._recent.clear()

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


def _check_password(password: str) -> None:
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError("password must be 1 to 1024 characters")


def _usable(account: Account) -> bool:
    return account.disabled_at is None and not _expired(account)


def _expired(item: Account | AppToken) -> bool:
    return item.expires_at is not None and _aware(item.expires_at) <= datetime.now(UTC)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
