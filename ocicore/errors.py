"""The one catalogue of OCI error codes, with their messages and HTTP statuses.

Codes and messages follow the OCI Distribution Spec 1.1 ("Error Codes"); statuses follow the
reference implementation (distribution/distribution ``registry/api/errcode``). A handler raises
:class:`OCIError`; the error middleware turns it into the JSON body the spec names.
"""

from __future__ import annotations

import enum
import json
from typing import Any


class ErrorCode(enum.Enum):
    """An OCI error code: (message, default HTTP status)."""

    BLOB_UNKNOWN = ("blob unknown to registry", 404)
    BLOB_UPLOAD_INVALID = ("blob upload invalid", 400)
    BLOB_UPLOAD_UNKNOWN = ("blob upload unknown to registry", 404)
    DIGEST_INVALID = ("provided digest did not match uploaded content", 400)
    MANIFEST_BLOB_UNKNOWN = ("manifest references a manifest or blob unknown to registry", 400)
    MANIFEST_INVALID = ("manifest invalid", 400)
    MANIFEST_UNKNOWN = ("manifest unknown to registry", 404)
    NAME_INVALID = ("invalid repository name", 400)
    NAME_UNKNOWN = ("repository name not known to registry", 404)
    SIZE_INVALID = ("provided length did not match content length", 400)
    UNAUTHORIZED = ("authentication required", 401)
    DENIED = ("requested access to the resource is denied", 403)
    UNSUPPORTED = ("the operation is unsupported", 405)
    TOOMANYREQUESTS = ("too many requests", 429)
    UNAVAILABLE = ("service unavailable", 503)
    # Not in the spec's table, named as distribution/distribution names them.
    RANGE_INVALID = ("invalid content range", 416)
    PAGINATION_NUMBER_INVALID = ("invalid number of results requested", 400)
    # Wharf's admin API (/api/v1/) answers in the same envelope, with these codes besides.
    INVALID_REQUEST = ("the request is invalid", 400)
    NOT_FOUND = ("no such resource", 404)
    CONFLICT = ("the resource exists already", 409)

    @property
    def message(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]


class OCIError(Exception):
    """A request failed with an OCI error code; ``status`` overrides the code's default."""

    def __init__(
        self,
        code: ErrorCode,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        """``message``: what clients print (skopeo, podman show it), when the code's own
        words do not say enough."""
        super().__init__(f"{code.name}: {detail}" if detail is not None else code.name)
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status if status is not None else code.status
        self.headers = headers or {}

    def body(self) -> bytes:
        entry: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()
