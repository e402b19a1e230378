"""The origin as a real process: restarted, killed with SIGKILL mid-operation, stopped."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.process import OriginProcess
from tests.support import admin_auth, make_image, push_image, sha256

pytestmark = pytest.mark.fault


async def session_for(origin_process: OriginProcess) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=origin_process.url, middlewares=(admin_auth(origin_process.data_dir),)
    )


async def test_chunked_upload_continues_after_a_crash(origin_process: OriginProcess) -> None:
    data = os.urandom(300_000)
    async with await session_for(origin_process) as http:
        async with http.post("/v2/r/blobs/uploads/") as r:
            location = r.headers["Location"]
        async with http.patch(
            location, data=data[:100_000], headers={"Content-Range": "0-99999"}
        ) as r:
            assert r.status == 202
    await origin_process.kill()
    await origin_process.start()
    async with await session_for(origin_process) as http:
        async with http.get(location) as r:
            assert r.status == 204
            assert r.headers["Range"] == "0-99999"
        async with http.patch(
            location, data=data[100_000:], headers={"Content-Range": "100000-299999"}
        ) as r:
            assert r.status == 202
        async with http.put(f"{location}?digest={sha256(data)}") as r:
            assert r.status == 201
        async with http.get(f"/v2/r/blobs/{sha256(data)}") as r:
            assert await r.read() == data


async def test_a_crash_mid_upload_leaves_nothing_partial(origin_process: OriginProcess) -> None:
    data = os.urandom(8 << 20)
    digest = sha256(data)
    sent = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield data[: 1 << 20]
        yield data[1 << 20 : 2 << 20]
        sent.set()
        await asyncio.sleep(30)  # the origin dies before the rest arrives
        yield data[2 << 20 :]

    async with await session_for(origin_process) as http:
        async with http.post("/v2/r/blobs/uploads/") as r:
            location = r.headers["Location"]
        upload = asyncio.create_task(http.put(f"{location}?digest={digest}", data=slow_body()))
        await sent.wait()
        await asyncio.sleep(0.3)
        await origin_process.kill()
        with pytest.raises(aiohttp.ClientError):
            await upload
    await origin_process.start()
    async with await session_for(origin_process) as http:
        async with http.head(f"/v2/r/blobs/{digest}") as r:
            assert r.status == 404
        async with http.get(location) as r:
            assert r.status == 204
            assert r.headers["Range"] == "0-0"
        async with http.put(f"{location}?digest={digest}", data=io.BytesIO(data)) as r:
            assert r.status == 201
        async with http.get(f"/v2/r/blobs/{digest}") as r:
            assert await r.read() == data
    assert not list((origin_process.data_dir / "blobs").rglob("*.tmp"))


async def test_an_acknowledged_push_survives_sigkill(origin_process: OriginProcess) -> None:
    image = make_image("durable")
    async with await session_for(origin_process) as http:
        await push_image(http, "team/app", "v1", image)
    await origin_process.kill()
    await origin_process.start()
    async with await session_for(origin_process) as http:
        async with http.get("/v2/team/app/manifests/v1") as r:
            assert await r.read() == image.manifest
        for blob in image.blobs:
            async with http.get(f"/v2/team/app/blobs/{sha256(blob)}") as r:
                assert await r.read() == blob


async def test_sigterm_lets_requests_in_flight_finish(origin_process: OriginProcess) -> None:
    data = os.urandom(2 << 20)
    started = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield data[: 1 << 20]
        started.set()
        await asyncio.sleep(1.0)
        yield data[1 << 20 :]

    async with await session_for(origin_process) as http:
        async with http.head(f"/v2/r/blobs/{sha256(data)}") as r:  # log in before streaming
            assert r.status == 404
        push = asyncio.create_task(
            http.post(f"/v2/r/blobs/uploads/?digest={sha256(data)}", data=slow_body())
        )
        await started.wait()
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(origin_process.stop())
        response = await push
        assert response.status == 201
        response.release()
        assert await stopping == 0
    await origin_process.start()
    async with (
        await session_for(origin_process) as http,
        http.get(f"/v2/r/blobs/{sha256(data)}") as r,
    ):
        assert await r.read() == data
