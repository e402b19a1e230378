"""Repository names and tags, validated before they reach storage or a database."""

from __future__ import annotations

import re

from ocicore.errors import ErrorCode, OCIError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise OCIError(ErrorCode.NAME_INVALID, f"repository name longer than {MAX_NAME_LENGTH}")
    if not _NAME.match(name):
        raise OCIError(ErrorCode.NAME_INVALID, f"invalid repository name {name[:80]!r}")
    return name


def is_tag(reference: str) -> bool:
    return _TAG.match(reference) is not None


def validate_tag(tag: str) -> str:
    if not is_tag(tag):
        raise OCIError(ErrorCode.INVALID_REQUEST, f"invalid tag {tag[:80]!r}")
    return tag
