"""The origin's token signing keys: ES256 (P-256), created on first start, published as JWKS.

Keys live in ``<data_dir>/keys/<kid>.pem`` (mode 0600), where the key id is the key's RFC 7638
thumbprint. The newest key signs; every key in the folder is published, so tokens signed by a
key that is being rotated out stay verifiable until they expire and the file is removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ocicore.auth.scopes import Scope


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
    def __init__(self, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.keys = sorted(keys, key=lambda k: k.created)

    @classmethod
    def load_or_create(cls, folder: Path) -> SigningKeys:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = [cls._load(path) for path in sorted(folder.glob("*.pem"))]
        return cls(keys or [cls.create(folder)])

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
        return self.keys[-1]

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
    ) -> tuple[str, int]:
        """A signed token granting ``access``, and its lifetime in whole seconds."""
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
        }
        key = self.current
        token = jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})
        return token, expires_in
