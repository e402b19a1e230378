"""The origin's token signing keys: ES256 (P-256), created on first start, published as JWKS.

Keys live in ``<data_dir>/keys/<kid>.pem`` (mode 0600), where the key id is the key's RFC 7638
thumbprint and the file's time is the key's creation. Every key in the folder is published.

Rotation, without a token anyone holds being refused: a new key is published ``publish_ahead``
seconds (the JWKS cache lifetime of edges) before it starts signing, so every verifier knows it
by then; the key it replaces keeps being published until the last token it signed has
expired, and is then deleted (:meth:`SigningKeys.retire`). An emergency rotation (a key that
leaked) signs with the new key at once and deletes the others: every outstanding token dies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ocicore.auth.scopes import Scope

KeyState = Literal["next", "signing", "retiring"]
JWKS_MAX_AGE = 300  # seconds verifiers may cache the key set; a new key is published this early


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


class SigningKeys:
    def __init__(
        self, folder: Path, keys: Sequence[SigningKey], publish_ahead: float = JWKS_MAX_AGE
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.folder = folder
        self.publish_ahead = publish_ahead
        self.keys = sorted(keys, key=lambda k: k.created)

    @classmethod
    def load_or_create(cls, folder: Path, publish_ahead: float = JWKS_MAX_AGE) -> SigningKeys:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = [cls._load(path) for path in sorted(folder.glob("*.pem"))]
        return cls(folder, keys or [cls.create(folder)], publish_ahead)

    def reload(self) -> None:
        """Read the folder again (another replica, or an operator, may have rotated)."""
        keys = [self._load(path) for path in sorted(self.folder.glob("*.pem"))]
        if keys:
            self.keys = sorted(keys, key=lambda k: k.created)

    def rotate(self, immediately: bool = False) -> SigningKey:
        """A new key: signing once it has been published for ``publish_ahead`` seconds, or
        at once (``immediately``, when a key leaked), the other keys then deleted."""
        key = self.create(self.folder)
        if immediately:
            for old in self.keys:
                (self.folder / f"{old.kid}.pem").unlink(missing_ok=True)
            self.keys = [key]
        else:
            self.keys = [*self.keys, key]
        return key

    def retire(self, token_ttl: float, now: float | None = None) -> list[str]:
        """Delete the keys older than the signing one once every token they signed has
        expired; their key ids."""
        now = time.time() if now is None else now
        current = self.current
        replaced_at = max(current.created + self.publish_ahead, current.created)
        if now < replaced_at + token_ttl + 60:  # a minute for clocks and the verifiers' leeway
            return []
        old = [k for k in self.keys if k.created < current.created]
        for key in old:
            (self.folder / f"{key.kid}.pem").unlink(missing_ok=True)
        self.keys = [k for k in self.keys if k not in old]
        return [k.kid for k in old]

    def state(self, key: SigningKey) -> KeyState:
        """``signing``, ``next`` (published, not signing yet) or ``retiring``."""
        current = self.current
        if key is current:
            return "signing"
        return "next" if key.created > current.created else "retiring"

    @staticmethod
    def _load(path: Path) -> SigningKey:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{path} is not an EC private key")
        return SigningKey(thumbprint(_public_jwk(private)), private, path.stat().st_mtime)

    @staticmethod
    def create(folder: Path) -> SigningKey:
        """A new key, written with mode 0600 before anything can read it."""
        private = ec.generate_private_key(ec.SECP256R1())
        kid = thumbprint(_public_jwk(private))
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(folder / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return SigningKey(kid, private, time.time())

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
