"""Garbage collection killed mid-pass (SIGKILL, a real origin process): nothing acknowledged
is lost, nothing partial is served, and the passes after the restart finish the work."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.process import OriginProcess
from tests.support import Image, admin_auth, make_image, push_image, sha256, until

pytestmark = pytest.mark.fault

GRACE = "1"


@pytest.fixture
async def collecting(tmp_path: Path) -> AsyncIterator[OriginProcess]:
    """An origin collecting back to back: a pass every 0.1 s, a one-second grace."""
    env = {"WHARF_ORIGIN_GC_GRACE_SECONDS": GRACE, "WHARF_ORIGIN_GC_INTERVAL_SECONDS": "0.1"}
    process = OriginProcess(tmp_path / "data", tmp_path / "origin.log", env)
    await process.start()
    yield process
    await process.stop_quietly()


def session(origin: OriginProcess) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=origin.url, middlewares=(admin_auth(origin.data_dir),))


async def pulls_whole(http: aiohttp.ClientSession, tag: str, image: Image) -> None:
    async with http.get(f"/v2/admin/app/manifests/{tag}") as r:
        assert r.status == 200, tag
        assert await r.read() == image.manifest
    for blob in image.blobs:
        async with http.get(f"/v2/admin/app/blobs/{sha256(blob)}") as r:
            assert r.status == 200, tag
            assert await r.read() == blob


def blob_files(data_dir: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (data_dir / "blobs" / "sha256").rglob("*") if p.is_file()}


async def test_killed_mid_collection_nothing_acknowledged_is_lost(
    collecting: OriginProcess,
) -> None:
    origin = collecting
    async with session(origin) as http:
        password = (origin.data_dir / "admin-password").read_text().strip()
        async with http.put(
            "/api/v1/namespaces/admin/time-machine",
            json={"seconds": 0},
            headers={"Authorization": aiohttp.encode_basic_auth("admin", password)},
            middlewares=(),
        ) as r:
            assert r.status == 200, await r.text()
        # Garbage to collect while the origin is killed: 40 images pushed, then deleted.
        doomed = [make_image(f"doomed-{i}") for i in range(40)]
        for i, image in enumerate(doomed):
            await push_image(http, "admin/app", f"doomed-{i}", image)
        for image in doomed:
            async with http.delete(f"/v2/admin/app/manifests/{image.digest}") as r:
                assert r.status == 202

    acknowledged: dict[str, Image] = {}
    rng = random.Random(11)
    for cycle in range(3):
        stop = asyncio.Event()

        async def pusher(cycle: int = cycle, stop: asyncio.Event = stop) -> None:
            n = 0
            async with session(origin) as http:
                while not stop.is_set():
                    tag, image = f"kept-{cycle}-{n}", make_image(f"kept-{cycle}-{n}")
                    try:
                        await push_image(http, "admin/app", tag, image)
                    except (aiohttp.ClientError, AssertionError):
                        return  # killed under it: not acknowledged
                    acknowledged[tag] = image
                    n += 1

        task = asyncio.create_task(pusher())
        await asyncio.sleep(rng.uniform(0.3, 1.5))  # passes run every 0.1 s meanwhile
        await origin.kill()
        stop.set()
        await task
        await origin.start()
        async with session(origin) as http:
            for tag, image in acknowledged.items():
                await pulls_whole(http, tag, image)

    # The passes after the last restart finish what the killed ones began.
    doomed_blobs = {sha256(b) for image in doomed for b in image.blobs}
    await until(lambda: not (doomed_blobs & blob_files(origin.data_dir)), seconds=60)
    kept_blobs = {sha256(b) for image in acknowledged.values() for b in image.blobs}
    await asyncio.sleep(float(GRACE) * 2 + 0.5)  # what an interrupted push left goes too
    await until(lambda: blob_files(origin.data_dir) == kept_blobs, seconds=30)
    async with session(origin) as http:
        for tag, image in acknowledged.items():
            await pulls_whole(http, tag, image)
    assert len(acknowledged) > 5
