"""Geo-replicated storage: a namespace placed in two locations (a folder for "eu", an S3
bucket for "us"), two origin replicas (one per region) sharing PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.postgres import PostgresServer
from tests.replicas import Replicas, leading, metric
from tests.storage.moto import MotoServer
from tests.support import sha256, until

MiB = 1 << 20
pytestmark = pytest.mark.fault  # real processes, one killed on purpose


@pytest.fixture
async def regions(
    tmp_path: Path, postgres: PostgresServer, moto_server: MotoServer
) -> AsyncIterator[tuple[Replicas, str]]:
    bucket = await moto_server.new_bucket()
    group = Replicas(
        tmp_path,
        await postgres.new_database(),
        [
            {"name": "eu", "driver": "filesystem", "region": "eu", "path": str(tmp_path / "eu")},
            moto_server.location("us", bucket, region="us", part_bytes=5 * MiB),
        ],
        {
            "default_locations": ["eu"],
            "placement_copies": 1,
            "leader_poll_seconds": 0.5,
            "argon2_time_cost": 1,
            "argon2_memory_kib": 1024,
        },
    )
    await group.start(2, regions=["eu", "us"])
    yield group, bucket
    await group.stop()


async def admin_api(
    http: aiohttp.ClientSession, replicas: Replicas, method: str, url: str, **kw: object
) -> object:
    async with http.request(
        method,
        url,
        headers={"Authorization": replicas.admin()},
        **kw,  # type: ignore[arg-type]
    ) as r:
        assert r.status < 300, await r.text()
        return await r.json()


async def push(http: aiohttp.ClientSession, url: str, admin: str, name: str, data: bytes) -> str:
    async with http.get(
        f"{url}/auth/token",
        params={"service": "wharf", "scope": f"repository:{name}:pull,push"},
        headers={"Authorization": admin},
    ) as r:
        token = (await r.json())["token"]
    digest = sha256(data)
    async with http.post(
        f"{url}/v2/{name}/blobs/uploads/",
        params={"digest": digest},
        data=io.BytesIO(data),
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 201, await r.text()
    return digest


async def test_a_namespace_in_two_locations_gets_every_blob_in_both_despite_a_killed_copier(
    regions: tuple[Replicas, str], moto_server: MotoServer, tmp_path: Path
) -> None:
    replicas, bucket = regions
    eu, us = replicas.processes
    async with aiohttp.ClientSession() as http:
        placed = await admin_api(
            http, replicas, "PUT", f"{eu.url}/api/v1/storage/namespaces/global",
            json={"locations": ["eu", "us"]},
        )  # fmt: skip
        assert placed == {"namespace": "global", "locations": ["eu", "us"], "chosen": True}
        blobs = [os.urandom(24 * MiB) for _ in range(5)]
        digests = [await push(http, eu.url, replicas.admin(), "global/app", b) for b in blobs]
        local = await push(http, eu.url, replicas.admin(), "local/app", os.urandom(1000))

        # Kill the replica running the copier while a copy is under way (an upload is open
        # in the bucket), then start it again.
        (leader,) = await leading(replicas.processes)

        async def copying() -> bool:
            return bool((await moto_server.contents(bucket))[1])

        await until(copying, 60, interval=0.01)
        await leader.kill()
        keys, _ = await moto_server.contents(bucket)
        copied_before = [k for k in keys if k.startswith("blobs/")]
        assert len(copied_before) < len(blobs)  # it really was cut short
        await leader.start()

        async with asyncio.timeout(90):
            while True:
                views = [
                    await admin_api(http, replicas, "GET", f"{us.url}/api/v1/storage/blobs/{d}")
                    for d in digests
                ]
                if all(v["locations"] == ["eu", "us"] for v in views):  # type: ignore[index]
                    break
                await asyncio.sleep(0.2)
        assert all(v["pending"] == [] for v in views)  # type: ignore[index]
        # Every copy is whole: the bucket holds exactly those blobs, each matching its digest.
        keys, _ = await moto_server.contents(bucket)
        held = sorted(k for k in keys if k.startswith("blobs/"))
        assert held == sorted(f"blobs/sha256/{d[7:9]}/{d[7:]}" for d in digests)
        async with moto_server.client() as s3:
            for key in held:
                body = await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read()
                assert hashlib.sha256(body).hexdigest() == key.rsplit("/", 1)[1]
        # A namespace left to the defaults stays where it was pushed.
        view = await admin_api(http, replicas, "GET", f"{eu.url}/api/v1/storage/blobs/{local}")
        assert view == {"digest": local, "size": 1000, "locations": ["eu"], "pending": []}
        for replica in (eu, us):  # the gauge is refreshed every 5 s on each replica

            async def none_pending(url: str = replica.url) -> bool:
                return await metric(url, "wharf_origin_storage_pending_blobs", location="us") == 0

            await until(none_pending, 15)

        # Reads come from the nearest location: with eu's copy gone behind its back, the us
        # replica still serves the blob, from its bucket.
        (tmp_path / "eu" / "blobs" / "sha256" / digests[0][7:9] / digests[0][7:]).unlink()
        async with http.get(
            f"{us.url}/auth/token",
            params={"service": "wharf", "scope": "repository:global/app:pull"},
            headers={"Authorization": replicas.admin()},
        ) as r:
            token = (await r.json())["token"]
        async with http.get(
            f"{us.url}/v2/global/app/blobs/{digests[0]}",
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            assert r.status == 200
            assert await r.read() == blobs[0]


async def test_backfill_places_what_was_there_before(
    regions: tuple[Replicas, str], moto_server: MotoServer, tmp_path: Path
) -> None:
    replicas, _ = regions
    eu, us = replicas.processes
    async with aiohttp.ClientSession() as http:
        digest = await push(http, eu.url, replicas.admin(), "old/app", b"pushed long ago" * 100)
        # A namespace placed later: its existing blobs are queued at once.
        await admin_api(
            http, replicas, "PUT", f"{us.url}/api/v1/storage/namespaces/old",
            json={"locations": ["eu", "us"]},
        )  # fmt: skip

        async def placed() -> bool:
            url = f"{eu.url}/api/v1/storage/blobs/{digest}"
            view = await admin_api(http, replicas, "GET", url)
            return view["locations"] == ["eu", "us"]  # type: ignore[index,no-any-return]

        await until(placed, 30)
        result = await admin_api(http, replicas, "POST", f"{eu.url}/api/v1/storage/backfill")
        assert result == {"recorded": 0, "queued": 0}  # nothing left to do
        # A blob whose placement was never recorded (pushed before placements were kept):
        # backfill finds it where it is.
        legacy = await push(http, eu.url, replicas.admin(), "legacy/app", b"from before" * 50)
        conn = await asyncpg.connect(replicas.database_url.replace("+asyncpg", ""))
        try:
            await conn.execute("DELETE FROM blob_placements WHERE digest = $1", legacy)
        finally:
            await conn.close()
        url = f"{eu.url}/api/v1/storage/blobs/{legacy}"
        assert (await admin_api(http, replicas, "GET", url))["locations"] == []  # type: ignore[index]
        result = await admin_api(http, replicas, "POST", f"{eu.url}/api/v1/storage/backfill")
        assert result == {"recorded": 1, "queued": 0}  # default_locations: eu, where it is
        assert (await admin_api(http, replicas, "GET", url))["locations"] == ["eu"]  # type: ignore[index]
        async with http.put(
            f"{eu.url}/api/v1/storage/namespaces/old",
            json={"locations": ["mars"]},
            headers={"Authorization": replicas.admin()},
        ) as r:
            assert r.status == 404  # no such location; nothing changed
        view = await admin_api(http, replicas, "GET", f"{eu.url}/api/v1/storage/namespaces/old")
        assert view == {"namespace": "old", "locations": ["eu", "us"], "chosen": True}
