"""Docker token scopes: ``repository:<name>:<action>[,<action>...]``.

Besides ``repository`` and ``registry:catalog``, Wharf knows ``api:v1:*``: the right to call the
admin API as the token's subject, which registry tokens do not carry unless asked for.

Grammar (distribution's token spec): ``type ":" name ":" actions``. The name of a repository may
itself hold ``:`` (a registry host with a port), so the type ends at the first colon and the
actions start after the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocicore.errors import OCIError
from ocicore.names import validate_name

ACTIONS = frozenset({"pull", "push", "delete", "*"})
_TYPE = re.compile(r"^[a-z0-9]+$")
MAX_SCOPE_LENGTH = 512


class InvalidScope(ValueError):
    """A scope string that does not follow the grammar."""


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def claim(self) -> dict[str, object]:
        """The entry of a token's ``access`` claim that grants this scope."""
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def parse_scope(text: str) -> Scope:
    if len(text) > MAX_SCOPE_LENGTH:
        raise InvalidScope("scope too long")
    kind, sep, rest = text.partition(":")
    name, sep2, actions_text = rest.rpartition(":")
    if not sep or not sep2 or not _TYPE.match(kind) or not name:
        raise InvalidScope(f"malformed scope {text[:80]!r}")
    actions = frozenset(actions_text.split(","))
    if not actions <= ACTIONS:
        raise InvalidScope(f"unknown action in {text[:80]!r}")
    if kind == "repository":
        try:
            validate_name(name)
        except OCIError:
            raise InvalidScope(f"invalid repository name in {text[:80]!r}") from None
    elif kind == "registry":
        if name != "catalog":
            raise InvalidScope(f"unknown registry resource in {text[:80]!r}")
    elif kind == "api":
        if name != "v1" or actions != {"*"}:
            raise InvalidScope(f"the api scope is api:v1:*, not {text[:80]!r}")
    else:
        raise InvalidScope(f"unknown resource type {kind!r}")
    return Scope(kind, name, actions)


def parse_scopes(values: list[str]) -> list[Scope]:
    """Scopes from ``scope`` query parameters (repeated, or space-separated in one)."""
    return [parse_scope(part) for value in values for part in value.split()]
