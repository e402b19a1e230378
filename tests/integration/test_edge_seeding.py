"""An edge seeds the large blobs it holds: the torrent is the origin's (same info-hash), a
peer can fetch the blob from the edge's swarm, eviction removes the torrent, and a restarted
edge seeds again what it holds."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp

from edge.keys import SEEDER
from ocicore.torrent import Swarm
from tests.edges import Upstream, settled, start_edge
from tests.support import push_blob, registry_auth, sha256

MiB = 1 << 20
SWARM: dict[str, Any] = {"swarm_listen": "127.0.0.1:0", "swarm_threshold_bytes": MiB}


async def test_an_edge_seeds_what_it_holds(upstream: Upstream, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    auth = (registry_auth("admin", upstream.password),)
    async with aiohttp.ClientSession(base_url=upstream.url, middlewares=auth) as origin:
        digest = await push_blob(origin, "team/app", data)
        async with origin.get(f"/v2/team/app/_wharf/torrents/{digest}") as r:
            torrent, info_hash = await r.read(), r.headers["X-Wharf-Info-Hash"]

    edge = await start_edge(upstream, tmp_path / "edge", **SWARM)
    async with aiohttp.ClientSession(base_url=str(edge.make_url("")), middlewares=auth) as c:
        async with c.get(f"/v2/team/app/blobs/{digest}") as r:
            assert await r.read() == data
        await settled(edge)
    assert edge.app is not None
    seeder = edge.app[SEEDER]
    assert seeder.seeding == {digest: info_hash}  # the origin's torrent, computed at the edge

    peer = Swarm()
    try:
        folder = tmp_path / "peer"
        folder.mkdir()
        async with asyncio.timeout(30):
            await peer.download(torrent, folder, [("127.0.0.1", seeder.swarm.port)])
        assert (folder / digest.removeprefix("sha256:")).read_bytes() == data
    finally:
        peer.close()
    await edge.close()

    # A restart seeds it again; with room for one blob only, the next one evicts it.
    again = await start_edge(upstream, tmp_path / "edge", cache_size=4 * MiB, **SWARM)
    try:
        assert again.app is not None
        assert again.app[SEEDER].seeding == {digest: info_hash}
        async with aiohttp.ClientSession(base_url=upstream.url, middlewares=auth) as origin:
            newer = await push_blob(origin, "team/app", os.urandom(3 * MiB))
        async with (
            aiohttp.ClientSession(base_url=str(again.make_url("")), middlewares=auth) as client,
            client.get(f"/v2/team/app/blobs/{newer}") as r,
        ):
            assert r.status == 200
            await r.read()
        await settled(again)
        assert list(again.app[SEEDER].seeding) == [newer]
        assert again.app[SEEDER].swarm.torrents() == 1
        # the newer blob came through the swarm and is seeded from a link to the stored file
        links = [p.name for p in (tmp_path / "edge" / "swarm").iterdir()]
        assert links == [newer.removeprefix("sha256:")]
    finally:
        await again.close()
    assert sha256(data) == digest
