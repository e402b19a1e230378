"""Large blobs spread edge to edge over BitTorrent, the origin sending about one copy.

Each test reads what happened from the Prometheus metrics the edges and the origin export:
bytes an edge received from peers and from the web seed (the origin), swarm fills completed
or finished over HTTP, banned peers, and the origin's blob bytes sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge.keys import BLOBS, SEEDER, STORE
from edge.swarm import PORT
from gossip.node import StaticPeer
from ocicore.digest import Digest
from tests.corrupt_peer import CorruptPeer
from tests.edges import Upstream, home_of, pull, push, settled, start_edge, start_region
from tests.support import free_port, registry_auth, sample

MiB = 1 << 20


async def metrics(server: TestServer | Upstream) -> str:
    url = server.url if isinstance(server, Upstream) else str(server.make_url(""))
    async with aiohttp.ClientSession() as client, client.get(f"{url}/metrics") as r:
        return await r.text()


async def received(edge: TestServer, source: str) -> float:
    return sample(await metrics(edge), "wharf_edge_swarm_received_bytes_total", source=source)


@pytest.fixture
async def region(upstream: Upstream, tmp_path: Path) -> AsyncIterator[list[TestServer]]:
    edges = await start_region(upstream, tmp_path, 3)
    yield edges
    for edge in edges:
        await edge.close()


async def test_the_second_and_third_edges_get_the_blob_from_peers(
    upstream: Upstream, region: list[TestServer]
) -> None:
    data = os.urandom(64 * MiB)
    digest = await push(upstream, data)
    home = int(home_of([f"edge-{i}" for i in range(3)], digest).removeprefix("edge-"))
    order = [home] + [i for i in range(3) if i != home]  # the one that asks the origin first

    for index in order:
        assert await pull(region[index], upstream, digest) == digest
        await settled(region[index])

    first, *others = (region[i] for i in order)
    assert await received(first, "web_seed") == len(data)
    for edge in others:
        assert await received(edge, "peers") >= 0.9 * len(data)
        assert await received(edge, "web_seed") == 0
        text = await metrics(edge)
        assert sample(text, "wharf_edge_swarm_fills_total", result="complete") == 1
    assert await upstream.blob_bytes_sent() <= 1.25 * len(data)
    assert upstream.blob_gets[digest] == 0  # no plain GET: pieces only
    for edge in region:  # every edge holds it, checked, and seeds it
        assert edge.app is not None
        path = edge.app[STORE].path(Digest.parse(digest))
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.removeprefix("sha256:")
        assert digest in edge.app[SEEDER].seeding


async def test_three_edges_asked_at_once_cost_the_origin_about_one_copy(
    upstream: Upstream, region: list[TestServer]
) -> None:
    data = os.urandom(64 * MiB)
    digest = await push(upstream, data)
    results = await asyncio.gather(*(pull(edge, upstream, digest) for edge in region))
    assert results == [digest] * 3
    for edge in region:
        await settled(edge)
    assert await upstream.blob_bytes_sent() <= 1.25 * len(data)
    from_peers = [await received(edge, "peers") for edge in region]
    assert sum(from_peers) >= 1.5 * len(data)  # two of three copies came edge to edge


async def test_a_lone_edge_fills_from_the_web_seed(upstream: Upstream, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 12345)  # not a whole number of pieces
    digest = await push(upstream, data)
    edge = await start_edge(upstream, tmp_path / "edge", swarm_threshold_bytes=MiB)
    try:
        assert await pull(edge, upstream, digest) == digest
        await settled(edge)
        assert await received(edge, "web_seed") == len(data)
        assert await received(edge, "peers") == 0
        assert upstream.blob_gets[f"SEED {digest}"] >= 1
        assert upstream.blob_gets[digest] == 0
    finally:
        await edge.close()


async def test_a_client_reads_the_first_pieces_while_later_ones_arrive(
    upstream: Upstream, tmp_path: Path
) -> None:
    data = os.urandom(48 * MiB)
    digest = await push(upstream, data)
    upstream.faults.web_seed_delay = 0.3  # each range of up to 16 MiB: the blob takes a while
    edge = await start_edge(upstream, tmp_path / "edge", swarm_threshold_bytes=MiB)
    try:
        assert edge.app is not None
        async with (
            aiohttp.ClientSession(
                base_url=str(edge.make_url("")),
                middlewares=(registry_auth("admin", upstream.password),),
            ) as client,
            client.get(f"/v2/team/app/blobs/{digest}") as r,
        ):
            first = await r.content.readany()
            fill = edge.app[BLOBS].fills.get(digest)
            assert fill is not None
            assert fill.written < len(data)  # still filling
            body = first + await r.read()
        assert body == data
        await settled(edge)
    finally:
        await edge.close()


async def test_a_stalled_swarm_falls_back_to_http(upstream: Upstream, tmp_path: Path) -> None:
    data = os.urandom(40 * MiB)
    digest = await push(upstream, data)
    upstream.faults.web_seed_answers = 1  # one range (libtorrent asks up to 16 MiB), no more
    edge = await start_edge(
        upstream, tmp_path / "edge", swarm_threshold_bytes=MiB, swarm_stall_seconds=1.0
    )
    try:
        assert await pull(edge, upstream, digest) == digest
        await settled(edge)
        text = await metrics(edge)
        assert sample(text, "wharf_edge_swarm_fills_total", result="fallback") == 1
        assert sample(text, "wharf_edge_swarm_fills_total", result="complete") == 0
        assert upstream.blob_gets[digest] == 1  # the rest, over plain HTTP
        assert 0 < await received(edge, "web_seed") < len(data)
        assert edge.app is not None
        path = edge.app[STORE].path(Digest.parse(digest))
        assert path.read_bytes() == data
        assert digest in edge.app[SEEDER].seeding  # and shared from now on
    finally:
        await edge.close()


async def test_a_peer_sending_corrupt_pieces_is_banned(upstream: Upstream, tmp_path: Path) -> None:
    """The edge's home edge answers, and its swarm sends bad pieces: libtorrent bans it, the
    stall brings in the web seed, and the client gets the right bytes."""
    data = os.urandom(8 * MiB)
    digest = await push(upstream, data)
    async with (
        aiohttp.ClientSession(
            base_url=upstream.url, middlewares=(registry_auth("admin", upstream.password),)
        ) as origin,
        origin.get(f"/v2/team/app/_wharf/torrents/{digest}") as r,
    ):
        torrent = await r.read()
    liar = CorruptPeer(torrent, data, tmp_path / "liar")

    async def joins(request: web.Request) -> web.Response:  # the liar's edge API
        return web.Response(body=torrent, headers={PORT: str(liar.port)})

    app = web.Application()
    app.router.add_get("/v2/{name:.+}/_wharf/torrents/{digest}", joins)
    liar_api = TestServer(app)
    await liar_api.start_server()
    port = free_port()
    ids = ["edge-0", *(f"liar-{i}" for i in range(20))]
    liar_id = next(i for i in ids[1:] if home_of(["edge-0", i], digest) == i)
    peers = (
        StaticPeer("edge-0", "edge", f"http://127.0.0.1:{port}", region="eu"),
        StaticPeer(liar_id, "edge", str(liar_api.make_url("")), region="eu"),
    )
    edge = await start_edge(
        upstream,
        tmp_path / "edge",
        port,
        node_id="edge-0",
        region="eu",
        peers=peers,
        swarm_threshold_bytes=MiB,
        swarm_stall_seconds=1.0,
    )
    try:
        assert await pull(edge, upstream, digest) == digest
        await settled(edge)
        text = await metrics(edge)
        assert liar.uploaded() > 0  # it did send its pieces
        assert sample(text, "wharf_edge_swarm_banned_peers_total") >= 1
        assert sample(text, "wharf_edge_swarm_fills_total", result="complete") == 1
        assert edge.app is not None
        assert edge.app[STORE].path(Digest.parse(digest)).read_bytes() == data
    finally:
        await edge.close()
        await liar_api.close()
        liar.close()


async def test_asking_an_edge_to_join_the_swarm_is_authorized_like_a_pull(
    upstream: Upstream, tmp_path: Path
) -> None:
    digest = await push(upstream, os.urandom(2 * MiB))
    edge = await start_edge(upstream, tmp_path / "edge", swarm_threshold_bytes=MiB)
    try:
        url = str(edge.make_url(""))
        async with (
            aiohttp.ClientSession(base_url=url) as anonymous,
            anonymous.get(f"/v2/team/app/_wharf/torrents/{digest}") as r,
        ):
            assert r.status == 401
        async with aiohttp.ClientSession(
            base_url=url, middlewares=(registry_auth("admin", upstream.password),)
        ) as client:
            async with client.get(f"/v2/team/other/_wharf/torrents/{digest}") as r:
                assert r.status == 404  # not in that repository
            async with client.get(f"/v2/team/app/_wharf/torrents/{digest}") as r:
                assert r.status == 200
                assert int(r.headers[PORT]) > 0
                torrent = await r.read()
        await settled(edge)  # the edge joined: it fetched the blob and seeds it
        assert edge.app is not None
        assert edge.app[SEEDER].metainfo(digest) == torrent
    finally:
        await edge.close()
