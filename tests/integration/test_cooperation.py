"""Edges of a region cooperate: each digest has a home edge, the others fill from it, so the
origin serves a blob once however many of the region's edges are asked. A home edge that is
down or sends wrong bytes costs the client latency, nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge.keys import STORE
from gossip.node import StaticPeer
from gossip.ring import home_edge
from ocicore.digest import Digest
from tests.edges import Upstream, settled, start_edge
from tests.support import free_port, push_blob, registry_auth

MiB = 1 << 20


@pytest.fixture
async def region(upstream: Upstream, tmp_path: Path) -> AsyncIterator[list[TestServer]]:
    ports = [free_port() for _ in range(4)]
    peers = tuple(
        StaticPeer(f"edge-{i}", "edge", f"http://127.0.0.1:{port}", region="eu")
        for i, port in enumerate(ports)
    )
    edges = [
        await start_edge(
            upstream,
            tmp_path / f"edge-{i}",
            port,
            node_id=f"edge-{i}",
            region="eu",
            peers=peers,
            advertise_url=f"http://127.0.0.1:{port}",
        )
        for i, port in enumerate(ports)
    ]
    yield edges
    for edge in edges:
        await edge.close()


def home_index(region: list[TestServer], digest: str) -> int:
    peers = [
        StaticPeer(f"edge-{i}", "edge", str(e.make_url("")), region="eu").peer()
        for i, e in enumerate(region)
    ]
    home = home_edge(peers[0], digest, peers)
    assert home is not None
    return int(home.id.removeprefix("edge-"))


async def pull(edge: TestServer, upstream: Upstream, digest: str) -> str:
    async with (
        aiohttp.ClientSession(
            base_url=str(edge.make_url("")),
            middlewares=(registry_auth("admin", upstream.password),),
        ) as client,
        client.get(f"/v2/team/app/blobs/{digest}") as r,
    ):
        assert r.status == 200, await r.text()
        hasher = hashlib.sha256()
        async for chunk in r.content.iter_chunked(MiB):
            hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()


async def push(upstream: Upstream, data: bytes) -> str:
    async with aiohttp.ClientSession(
        base_url=upstream.url, middlewares=(registry_auth("admin", upstream.password),)
    ) as origin:
        return await push_blob(origin, "team/app", data)


async def test_four_edges_asked_at_once_fetch_from_the_origin_once(
    upstream: Upstream, region: list[TestServer]
) -> None:
    digest = await push(upstream, os.urandom(32 * MiB))
    results = await asyncio.gather(*(pull(edge, upstream, digest) for edge in region))
    assert results == [digest] * 4
    assert upstream.blob_gets[digest] == 1
    for edge in region:  # and every edge now has it on its own disk
        await settled(edge)
        assert edge.app is not None
        assert edge.app[STORE].size(Digest.parse(digest)) == 32 * MiB


async def test_a_home_edge_that_is_down_is_skipped(
    upstream: Upstream, region: list[TestServer]
) -> None:
    digest = await push(upstream, os.urandom(4 * MiB))
    home = home_index(region, digest)
    await region[home].close()
    asker = region[(home + 1) % 4]
    assert await pull(asker, upstream, digest) == digest
    assert upstream.blob_gets[digest] == 1  # from the origin, directly


async def test_a_home_edge_sending_wrong_bytes_is_skipped(
    upstream: Upstream, region: list[TestServer]
) -> None:
    digest = await push(upstream, os.urandom(4 * MiB))
    home = region[home_index(region, digest)]
    assert await pull(home, upstream, digest) == digest  # the home edge has it...
    await settled(home)
    assert home.app is not None
    cached = home.app[STORE].path(Digest.parse(digest))
    with cached.open("r+b") as f:  # ...and its disk rots
        f.seek(MiB)
        f.write(b"\0" * 1024)
    asker = next(e for e in region if e is not home)
    assert await pull(asker, upstream, digest) == digest  # the client saw no wrong byte
    assert upstream.blob_gets[digest] == 2  # the home's fill, then the asker's fallback
