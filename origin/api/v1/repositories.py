"""Handlers: a repository's visibility and permissions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import json
from origin.keys import REPOSITORIES


async def _access(request: web.Request, caller: Caller) -> schemas.RepositoryAccess:
    name = request.match_info["repository"]
    public, permissions = await request.app[REPOSITORIES].access(caller, name)
    return schemas.RepositoryAccess(
        name=name,
        public=public,
        permissions=[
            schemas.Permission(kind=p.kind, subject=p.subject, role=p.role)  # type: ignore[arg-type]
            for p in permissions
        ],
    )


async def get_repository_access(request: web.Request, caller: Caller, _: Any) -> web.Response:
    return json(await _access(request, caller))


async def set_visibility(
    request: web.Request, caller: Caller, body: schemas.VisibilitySet
) -> web.Response:
    await request.app[REPOSITORIES].set_visibility(
        caller, request.match_info["repository"], body.public
    )
    return json(await _access(request, caller))


async def set_permission(
    request: web.Request, caller: Caller, body: schemas.PermissionSet
) -> web.Response:
    info = request.match_info
    await request.app[REPOSITORIES].set_permission(
        caller, info["repository"], info["kind"], info["subject"], body.role
    )
    return web.Response(status=204)


async def remove_permission(request: web.Request, caller: Caller, _: Any) -> web.Response:
    info = request.match_info
    await request.app[REPOSITORIES].set_permission(
        caller, info["repository"], info["kind"], info["subject"], None
    )
    return web.Response(status=204)
