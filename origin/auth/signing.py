"""The origin's token signing keys: ES256 (P-256), created on first start, published as JWKS.

Keys live in the metadata database (``signing_keys``), shared by every origin replica; the key
id is the key's RFC 7638 thumbprint. Every key kept is published. (A single origin kept them
in ``<data_dir>/keys/`` before: they are imported from there on first start.)

Rotation, without a token anyone holds being refused: a new key is published ``publish_ahead``
seconds (the JWKS cache lifetime of edges) before it starts signing, so every verifier knows it
by then; the key it replaces keeps being published until the last token it signed has
expired, and is then deleted (:meth:`SigningKeys.retire`). An emergency rotation (a key that
leaked) signs with the new key at once and deletes the others: every outstanding token dies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ocicore.auth.scopes import Scope

KeyState = Literal["next", "signing", "retiring"]
JWKS_MAX_AGE = 300  # seconds verifiers may cache the key set
KEY_REFRESH_SECONDS = 60  # how often every replica reads the keys again
# A new key signs only once every verifier can know it: published by every replica (within a
# refresh) and in every verifier's cache (within its max-age) by then.
PUBLISH_AHEAD = JWKS_MAX_AGE + KEY_REFRESH_SECONDS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: the SHA-256 of the required members, in lexical order, without spaces."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: ec.EllipticCurvePrivateKey
    created: float

    def jwk(self) -> dict[str, str]:
        return {**_public_jwk(self.private), "kid": self.kid, "alg": "ES256", "use": "sig"}


class KeyVault(Protocol):
    """Where signing keys are kept: the database (every replica shares it) or a folder."""

    async def load(self) -> list[SigningKey]: ...
    async def save(self, key: SigningKey) -> None: ...
    async def delete(self, kid: str) -> None: ...


def new_key() -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(thumbprint(_public_jwk(private)), private, time.time())


def to_pem(key: SigningKey) -> bytes:
    return key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def from_pem(pem: bytes, created: float, where: str) -> SigningKey:
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{where} is not an EC private key")
    return SigningKey(thumbprint(_public_jwk(private)), private, created)


class FolderVault:
    """Keys in ``<folder>/<kid>.pem`` (mode 0600), the file's time being the key's creation:
    where a single origin kept them before they moved into the database."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _load(self) -> list[SigningKey]:
        if not self.folder.is_dir():
            return []
        return [
            from_pem(path.read_bytes(), path.stat().st_mtime, str(path))
            for path in sorted(self.folder.glob("*.pem"))
        ]

    def _save(self, key: SigningKey) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / f"{key.kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(to_pem(key))
        os.utime(path, (key.created, key.created))

    async def load(self) -> list[SigningKey]:
        return await asyncio.to_thread(self._load)

    async def save(self, key: SigningKey) -> None:
        await asyncio.to_thread(self._save, key)

    async def delete(self, kid: str) -> None:
        (self.folder / f"{kid}.pem").unlink(missing_ok=True)


class SigningKeys:
    def __init__(
        self, vault: KeyVault, keys: Sequence[SigningKey], publish_ahead: float = PUBLISH_AHEAD
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.vault = vault
        self.publish_ahead = publish_ahead
        self.keys = sorted(keys, key=lambda k: k.created)

    @classmethod
    async def open(cls, vault: KeyVault, publish_ahead: float = PUBLISH_AHEAD) -> SigningKeys:
        """The vault's keys, a first one made if it has none."""
        keys = await vault.load()
        if not keys:
            key = new_key()
            await vault.save(key)
            keys = await vault.load()  # another replica may have made one at the same time
        return cls(vault, keys, publish_ahead)

    async def reload(self) -> None:
        """Read the vault again (another replica, or an operator, may have rotated)."""
        keys = await self.vault.load()
        if keys:
            self.keys = sorted(keys, key=lambda k: k.created)

    async def rotate(self, immediately: bool = False) -> SigningKey:
        """A new key: signing once it has been published for ``publish_ahead`` seconds, or
        at once (``immediately``, when a key leaked), the other keys then deleted."""
        key = new_key()
        await self.vault.save(key)
        if immediately:
            for old in self.keys:
                await self.vault.delete(old.kid)
            self.keys = [key]
        else:
            self.keys = [*self.keys, key]
        return key

    async def retire(self, token_ttl: float, now: float | None = None) -> list[str]:
        """Delete the keys older than the signing one once every token they signed has
        expired; their key ids."""
        now = time.time() if now is None else now
        current = self.current
        replaced_at = max(current.created + self.publish_ahead, current.created)
        if now < replaced_at + token_ttl + 60:  # a minute for clocks and the verifiers' leeway
            return []
        old = [k for k in self.keys if k.created < current.created]
        for key in old:
            await self.vault.delete(key.kid)
        self.keys = [k for k in self.keys if k not in old]
        return [k.kid for k in old]

    def state(self, key: SigningKey) -> KeyState:
        """``signing``, ``next`` (published, not signing yet) or ``retiring``."""
        current = self.current
        if key is current:
            return "signing"
        return "next" if key.created > current.created else "retiring"

    @property
    def current(self) -> SigningKey:
        """The newest key published for ``publish_ahead`` seconds (the oldest, if none is)."""
        ready = [k for k in self.keys if k.created <= time.time() - self.publish_ahead]
        return ready[-1] if ready else self.keys[0]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.keys]}

    def public_keys(self) -> dict[str, Any]:
        return {key.kid: key.private.public_key() for key in self.keys}

    def issue(
        self,
        subject: str,
        access: Sequence[Scope],
        issuer: str,
        audience: str,
        ttl: float,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A signed token granting ``access`` (with ``extra`` claims), and its lifetime in
        whole seconds."""
        now = int(time.time())
        expires_in = max(int(ttl), 1)
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + expires_in,
            "jti": uuid.uuid4().hex,
            "access": [scope.claim() for scope in access],
            **(extra or {}),
        }
        key = self.current
        token = jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})
        return token, expires_in
