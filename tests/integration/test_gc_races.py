"""The races of online garbage collection, forced: the test itself plays the collector (with
the collector's own queries, in a transaction it holds open at the worst moment) while a
client pushes. On PostgreSQL, where replicas run these side by side; SQLite has one writer,
which serializes them whole.

* A manifest push meets a collection of its repository that is deleting the links the
  manifest needs: the push waits for the collection, then is refused (MANIFEST_BLOB_UNKNOWN),
  never stored with blobs missing under it.
* An upload meets a sweep that is deleting the very blob it uploads (already held, so the
  upload would have dropped its own copy): the upload waits for the sweep, then writes the
  bytes again. Pulled byte for byte after.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ocicore.cas import ContentStore
from ocicore.digest import Digest
from origin.config import OriginConfig
from origin.metadata import gc
from origin.metadata.db import create_engine
from origin.metadata.models import manifests, repositories
from tests.support import (
    Client,
    error_code,
    make_image,
    push_blob,
    push_image,
    sha256,
)

GRACE = 0.5
Auth = dict[str, str]


@pytest.fixture
async def origin_config(origin_config: OriginConfig) -> OriginConfig:
    assert origin_config.database_url.startswith("postgresql")
    return dataclasses.replace(origin_config, gc_grace_seconds=GRACE, gc_interval_seconds=0)


@pytest.fixture
async def engine(origin_config: OriginConfig, origin: Client) -> AsyncIterator[AsyncEngine]:
    """The origin's database, as the test's collector sees it (the origin migrated it)."""
    engine = create_engine(origin_config.database_url)
    yield engine
    await engine.dispose()


async def waits(task: asyncio.Task[object]) -> bool:
    """The task is still blocked a while later (on a lock the test holds)."""
    await asyncio.sleep(0.5)
    return not task.done()


async def put_manifest(origin: Client, name: str, tag: str, body: bytes) -> tuple[int, str]:
    async with origin.put(
        f"/v2/{name}/manifests/{tag}",
        data=body,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    ) as r:
        return r.status, (await error_code(r)) if r.status >= 400 else ""


async def test_a_push_meeting_a_collection_of_its_links_waits_and_is_refused_whole(
    origin: Client, engine: AsyncEngine
) -> None:
    image = make_image("late-manifest")
    for blob in image.blobs:
        await push_blob(origin, "team/app", blob)
    async with engine.connect() as conn:
        repo_id = await conn.scalar(
            select(repositories.c.id).where(repositories.c.name == "team/app")
        )
    assert repo_id is not None

    async with engine.begin() as conn:  # a collection with no grace: the links go
        swept = await gc.collect_repository(
            conn, repo_id, "team/app", datetime.now(UTC), timedelta(0), 0
        )
        assert swept.links == len(image.blobs)
        push = asyncio.create_task(put_manifest(origin, "team/app", "v1", image.manifest))
        assert await waits(push)  # the push waits for the collection to commit
    assert await push == (400, "MANIFEST_BLOB_UNKNOWN")
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).where(manifests.c.digest == image.digest))
    assert stored == 0  # nothing stored with blobs missing under it

    await push_image(origin, "team/app", "v1", image)  # the client pushes again: all there
    for blob in image.blobs:
        async with origin.get(f"/v2/team/app/blobs/{sha256(blob)}") as r:
            assert await r.read() == blob


async def test_an_upload_meeting_a_sweep_of_its_blob_writes_the_bytes_again(
    origin: Client, engine: AsyncEngine, origin_config: OriginConfig, root: Auth
) -> None:
    async with origin.put(
        "/api/v1/namespaces/admin/time-machine", json={"seconds": 0}, headers=root, middlewares=()
    ) as r:
        assert r.status == 200
    image = make_image("swept")
    await push_image(origin, "admin/app", "v1", image)
    async with origin.delete(f"/v2/admin/app/manifests/{image.digest}") as r:
        assert r.status == 202
    await asyncio.sleep(GRACE + 0.1)
    async with origin.post("/api/v1/gc", headers=root, middlewares=()) as r:
        assert (await r.json())["tombstoned"] == len(image.blobs)
    await asyncio.sleep(GRACE + 0.1)  # due for deletion now

    layer = image.layers[0]
    digest = Digest.parse(sha256(layer))
    files = ContentStore(origin_config.data_dir)
    async with engine.begin() as conn:  # the sweep: row taken, bytes not yet deleted
        assert await gc.take(conn, [str(digest)], datetime.now(UTC), timedelta(seconds=GRACE))
        upload = asyncio.create_task(push_blob(origin, "admin/app", layer))
        assert await waits(upload)  # its claim waits for the sweep
        assert await files.delete(digest)
    await upload  # 201: the bytes written again, since the sweep took them

    for blob in image.blobs:
        if blob is not layer:
            await push_blob(origin, "admin/app", blob)
    async with origin.put(
        "/v2/admin/app/manifests/v1",
        data=image.manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    ) as r:
        assert r.status == 201
    for blob in image.blobs:
        async with origin.get(f"/v2/admin/app/blobs/{sha256(blob)}") as r:
            assert r.status == 200
            assert await r.read() == blob
