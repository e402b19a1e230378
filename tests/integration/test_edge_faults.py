"""The edge as a real process, killed with SIGKILL in the middle of a fill (over HTTP, and
through the swarm): after a restart nothing partial is served and the blob fills again,
whole."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from pathlib import Path

import aiohttp
import pytest

from tests.process import EdgeProcess, OriginProcess
from tests.support import admin_auth, sha256

pytestmark = pytest.mark.fault
MiB = 1 << 20


@pytest.mark.parametrize("swarm", [False, True], ids=["http", "swarm"])
async def test_a_fill_killed_half_way_leaves_nothing_servable(
    origin_process: OriginProcess, tmp_path: Path, swarm: bool
) -> None:
    data = os.urandom(96 * MiB)
    digest = sha256(data)
    auth = admin_auth(origin_process.data_dir)
    async with (
        aiohttp.ClientSession(base_url=origin_process.url, middlewares=(auth,)) as http,
        http.post(f"/v2/team/big/blobs/uploads/?digest={digest}", data=io.BytesIO(data)) as r,
    ):
        assert r.status == 201

    edge = EdgeProcess(
        origin_process.url,
        tmp_path / "edge",
        tmp_path / "edge.log",
        env={"WHARF_EDGE_SWARM": "true" if swarm else "false"},
    )
    await edge.start()
    try:
        async with (
            aiohttp.ClientSession(base_url=edge.url, middlewares=(auth,)) as http,
            http.get(f"/v2/team/big/blobs/{digest}") as r,
        ):
            assert r.status == 200  # headers go out as soon as the origin answers: the fill has
            await edge.kill()  # barely begun. SIGKILL: no cleanup, no flush
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        committed = tmp_path / "edge" / "blobs" / "sha256" / digest[7:9] / digest[7:]
        assert not committed.exists()  # the partial bytes never became a blob

        await edge.start()  # the same data dir
        async with aiohttp.ClientSession(base_url=edge.url, middlewares=(auth,)) as http:
            hasher = hashlib.sha256()
            async with http.get(f"/v2/team/big/blobs/{digest}") as r:
                assert r.status == 200
                async for chunk in r.content.iter_chunked(MiB):
                    hasher.update(chunk)
        assert f"sha256:{hasher.hexdigest()}" == digest
        for _ in range(100):  # the download ends once verified; the commit follows
            if committed.exists():
                break
            await asyncio.sleep(0.05)
        assert committed.stat().st_size == len(data)
        assert list((tmp_path / "edge" / "uploads").iterdir()) == []  # the dead fill's file is gone
        swarm_dir = tmp_path / "edge" / "swarm"
        links = [p.name for p in swarm_dir.iterdir()] if swarm_dir.exists() else []
        assert links == ([digest[7:]] if swarm else [])  # the one seeded, nothing partial
    finally:
        await edge.stop_quietly()
