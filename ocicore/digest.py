"""Content digests (``algorithm:encoded``) as the OCI image spec defines them.

Only ``sha256`` and ``sha512`` are accepted: any other well-formed algorithm is refused, so a
digest that reaches the store always names a hash we can verify.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from ocicore.errors import ErrorCode, OCIError

_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENCODED = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}
MAX_DIGEST_LENGTH = 256


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate; raises ``DIGEST_INVALID`` for anything we cannot verify."""
        if len(text) > MAX_DIGEST_LENGTH or not _GRAMMAR.match(text):
            raise OCIError(ErrorCode.DIGEST_INVALID, f"malformed digest {text[:80]!r}")
        algorithm, encoded = text.split(":", 1)
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            raise OCIError(ErrorCode.DIGEST_INVALID, f"unsupported digest algorithm {algorithm!r}")
        if not pattern.match(encoded):
            raise OCIError(ErrorCode.DIGEST_INVALID, f"malformed {algorithm} digest")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @staticmethod
    def is_digest(text: str) -> bool:
        return ":" in text

    def hasher(self) -> Hasher:
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"
