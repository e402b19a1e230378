"""The first start: an admin account whose generated password goes to a 0600 file; and the
replicator accounts, when their password is given as a file (a mounted secret, or what
``wharf up`` generates), so edges can carry pushes without anyone creating them by hand.

The console says where the password is, never what it is.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import structlog

from origin.auth.accounts import AccountService

ADMIN = "admin"
_log = structlog.get_logger("wharf.auth")


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
        f.flush()
        os.fsync(f.fileno())


async def ensure_admin(accounts: AccountService, data_dir: Path) -> None:
    if await accounts.store.find_account(ADMIN) is not None:
        return
    path = data_dir / "admin-password"
    password = secrets.token_urlsafe(24)
    path.unlink(missing_ok=True)  # a leftover from a start that died before the account
    _write_secret(path, password)
    await accounts.create_user(ADMIN, password, is_admin=True)
    _log.warning("created the admin account", account=ADMIN, password_file=str(path))


def write_secret(path: Path) -> None:
    """A new random secret in ``path`` (0600), unless one is there already."""
    if not path.exists():
        _write_secret(path, secrets.token_urlsafe(24))


async def ensure_replicators(
    accounts: AccountService, names: tuple[str, ...], password_file: Path | None
) -> None:
    """Create the replicator accounts that do not exist yet, with the file's password."""
    if password_file is None or not names:
        return
    password = (await asyncio.to_thread(password_file.read_text)).strip()
    for name in names:
        if await accounts.store.find_account(name) is None:
            await accounts.create_user(name, password)
            _log.warning(
                "created a replicator account", account=name, password_file=str(password_file)
            )
