"""One table of operations makes both the routes and the OpenAPI description.

Each :class:`Operation` names its method, path, body and response models and whether it needs
a signed-in caller; :func:`route` wraps its handler so that the body is read under a size
limit and validated before the handler sees it (a bad body is ``400 INVALID_REQUEST`` and
changes nothing), and :func:`openapi` describes the same table.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.caller import caller

MAX_BODY_BYTES = 64 * 1024
Handler = Callable[[web.Request, Caller, Any], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string", "maxLength": 255})
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI template; aiohttp patterns come from PATH_PATTERNS
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    many: bool = False  # the response is a list of `response`
    status: int = 200
    query: Sequence[Param] = ()
    signed_in: bool = True
    content_type: str = "application/json"

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


# Path parameters and the patterns aiohttp matches them with. A repository name holds
# slashes, so its routes put `/-/` after it: no repository name component can be `-`.
PATH_PATTERNS = {
    "repository": r"[a-z0-9][a-z0-9._/-]*?",
    "token_id": r"[0-9]{1,18}",
    "kind": r"accounts|teams",
}
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "repository": {"type": "string", "pattern": r"^[a-z0-9]+([._/-][a-z0-9]+)*$", "maxLength": 255},
    "token_id": {"type": "integer", "minimum": 0},
    "rule_id": {"type": "integer", "minimum": 0},
    "hook_id": {"type": "integer", "minimum": 0},
    "kind": {"type": "string", "enum": ["accounts", "teams"]},
    "tag": {"type": "string", "pattern": r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"},
    "digest": {"type": "string", "pattern": r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$"},
    "namespace": {
        "type": "string",
        "pattern": r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$",
        "maxLength": 64,
    },
}
_ACCOUNT_PATH = {"type": "string", "pattern": r"^[a-z0-9]+([._+-][a-z0-9]+)*$", "maxLength": 129}
_PARAM = re.compile(r"{(\w+)}")


def aiohttp_path(path: str) -> str:
    return _PARAM.sub(
        lambda m: f"{{{m[1]}:{PATH_PATTERNS[m[1]]}}}" if m[1] in PATH_PATTERNS else m[0], path
    )


def text_param(request: web.Request, name: str, default: str = "", limit: int = 255) -> str:
    value = request.query.get(name, default)
    if len(value) > limit:
        raise OCIError(ErrorCode.INVALID_REQUEST, f"{name} is longer than {limit}")
    return value


def number_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 19 or not low <= int(text) <= high:
        raise OCIError(ErrorCode.INVALID_REQUEST, f"{name} must be a number from {low} to {high}")
    return int(text)


async def read_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise OCIError(ErrorCode.INVALID_REQUEST, "body too large", status=413)
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise OCIError(ErrorCode.INVALID_REQUEST, "body too large", status=413)
    if not raw.strip():
        raise OCIError(ErrorCode.INVALID_REQUEST, "a JSON body is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()
        ][:20]
        raise OCIError(ErrorCode.INVALID_REQUEST, problems) from None


def route(operation: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        who = await caller(request) if operation.signed_in else Caller.anonymous(request.remote)
        body = await read_body(request, operation.body) if operation.body else None
        return await operation.handler(request, who, body)

    handle.__name__ = operation.operation_id
    return handle


def json(model: BaseModel | Sequence[BaseModel], status: int = 200) -> web.Response:
    if isinstance(model, BaseModel):
        text = model.model_dump_json()
    else:
        text = "[" + ",".join(item.model_dump_json() for item in model) + "]"
    return web.Response(text=text, status=status, content_type="application/json")


_ERRORS = {
    "400": "Invalid request: the body, a parameter or a name",
    "401": "Not signed in, or the credentials are wrong",
    "403": "Signed in, but not allowed",
    "404": "No such resource",
    "409": "The resource exists already",
    "413": "The body is too large",
    "429": "Too many failed sign-ins",
}


def openapi(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    models = {schemas.Errors} | {
        m for op in operations for m in (op.body, op.response) if m is not None
    }
    mapping, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    ref = {m: mapping[(m, "validation")] for m in models}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": PATH_SCHEMAS.get(name, _ACCOUNT_PATH),
            }
            for name in _PARAM.findall(op.path)
        ] + [
            {"name": p.name, "in": "query", "required": p.required, "schema": p.schema}
            | {"description": p.description}
            for p in op.query
        ]
        responses: dict[str, Any] = {}
        if op.response is None:
            responses[str(op.status)] = {"description": "Done"}
        else:
            item = ref[op.response]
            schema = {"type": "array", "items": item} if op.many else item
            responses[str(op.status)] = {
                "description": "Done",
                "content": {op.content_type: {"schema": schema}},
            }
        error = {"content": {"application/json": {"schema": ref[schemas.Errors]}}}
        for status, description in _ERRORS.items():
            responses[status] = {"description": description, **error}
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "parameters": params,
            "responses": responses,
        }
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref[op.body]}},
            }
        if op.signed_in:
            entry["security"] = [{"basic": []}, {"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wharf admin API",
            "version": version,
            "description": "Users, organizations, teams, robots, app tokens, repository "
            "permissions and visibility, and the audit log. Errors use the OCI error envelope.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A password, an app token or a robot's secret.",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A token from /auth/token carrying the scope api:v1:*.",
                },
            },
        },
    }
