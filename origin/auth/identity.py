"""Who an external identity provider (LDAP, OIDC) says someone is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExternalIdentity:
    provider: str  # "ldap" | "oidc"
    name: str  # login name, lower-case
    email: str | None
    groups: frozenset[str]
