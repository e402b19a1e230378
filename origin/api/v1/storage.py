"""Handlers: storage locations and where blobs are placed (system admins)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ocicore.digest import Digest
from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller
from origin.api.v1 import schemas
from origin.api.v1.spec import json
from origin.auth.accounts import validate_account_name
from origin.gc import Busy
from origin.keys import COLLECTOR, CONFIG, LOCATIONS, PEOPLE, PLACEMENTS
from origin.placement import find_blobs


async def list_locations(request: web.Request, caller: Caller, _: Any) -> web.Response:
    request.app[PEOPLE].require_admin(caller, "storage.read")
    pending = await request.app[PLACEMENTS].pending()
    nearest = request.app[LOCATIONS].nearest
    configured = {c.name: c for c in request.app[CONFIG].locations}
    views = []
    for name in sorted(nearest):
        config = configured.get(name)
        views.append(
            schemas.Location(
                name=name,
                driver=config.driver if config else "filesystem",
                region=config.region if config else "",
                pending=pending.get(name, 0),
                nearest=nearest.index(name),
            )
        )
    return json(views)


async def get_blob_placement(request: web.Request, caller: Caller, _: Any) -> web.Response:
    request.app[PEOPLE].require_admin(caller, "storage.read")
    digest = Digest.parse(request.match_info["digest"])
    placement = await request.app[PLACEMENTS].of(str(digest))
    if placement is None:
        raise OCIError(ErrorCode.BLOB_UNKNOWN, str(digest))
    return json(
        schemas.BlobPlacement(
            digest=placement.digest,
            size=placement.size,
            locations=placement.locations,
            pending=placement.pending,
        )
    )


def _namespace(request: web.Request) -> str:
    namespace = request.match_info["namespace"]
    try:
        return validate_account_name(namespace)
    except ValueError:
        raise OCIError(ErrorCode.NAME_INVALID, "a namespace is an account's name") from None


async def get_namespace_placement(request: web.Request, caller: Caller, _: Any) -> web.Response:
    request.app[PEOPLE].require_admin(caller, "storage.read")
    namespace = _namespace(request)
    locations, chosen = await request.app[PLACEMENTS].namespace(namespace)
    return json(schemas.NamespacePlacement(namespace=namespace, locations=locations, chosen=chosen))


async def set_namespace_placement(
    request: web.Request, caller: Caller, body: schemas.NamespacePlacementSet
) -> web.Response:
    people = request.app[PEOPLE]
    people.require_admin(caller, "storage.place")
    namespace = _namespace(request)
    known = set(request.app[LOCATIONS].nearest)
    unknown = sorted(set(body.locations) - known)
    if unknown:
        raise OCIError(ErrorCode.NOT_FOUND, f"no such storage location: {', '.join(unknown)}")
    queued = await request.app[PLACEMENTS].place_namespace(namespace, body.locations)
    people.record(
        caller,
        "storage.place",
        detail={"namespace": namespace, "locations": body.locations, "queued": queued},
    )
    locations, chosen = await request.app[PLACEMENTS].namespace(namespace)
    return json(schemas.NamespacePlacement(namespace=namespace, locations=locations, chosen=chosen))


async def backfill(request: web.Request, caller: Caller, _: Any) -> web.Response:
    """Look in every location for the blobs it holds, record what was not recorded, and queue
    every copy a namespace still needs (for blobs pushed before a location was added)."""
    people = request.app[PEOPLE]
    people.require_admin(caller, "storage.backfill")
    placements = request.app[PLACEMENTS]
    present = await find_blobs(request.app[LOCATIONS], await placements.unplaced())
    queued = await placements.backfill(present)
    recorded = len(present)
    people.record(caller, "storage.backfill", detail={"recorded": recorded, "queued": queued})
    return json(schemas.Backfill(recorded=recorded, queued=queued))


async def collect_garbage(request: web.Request, caller: Caller, _: Any) -> web.Response:
    """Run a garbage collection pass now, on this replica, and say what it deleted."""
    people = request.app[PEOPLE]
    people.require_admin(caller, "gc.run")
    try:
        done = await request.app[COLLECTOR].collect()
    except Busy:
        raise OCIError(
            ErrorCode.CONFLICT, "a garbage collection pass is running", message="a pass is running"
        ) from None
    view = schemas.GcPass.model_validate(done.counts())
    people.record(caller, "gc.run", detail=view.model_dump(exclude={"seconds"}))
    return json(view)
