"""Edges of a region cooperate: each digest has a home edge, the others fill from it, so the
origin serves a blob once however many of the region's edges are asked. A home edge that is
down or sends wrong bytes costs the client latency, nothing else."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from edge.keys import STORE
from ocicore.digest import Digest
from tests.edges import Upstream, home_of, pull, push, settled, start_region

MiB = 1 << 20


@pytest.fixture
async def region(upstream: Upstream, tmp_path: Path) -> AsyncIterator[list[TestServer]]:
    edges = await start_region(upstream, tmp_path, 4, swarm=False)  # HTTP cooperation only
    yield edges
    for edge in edges:
        await edge.close()


def home_index(region: list[TestServer], digest: str) -> int:
    return int(home_of([f"edge-{i}" for i in range(len(region))], digest).removeprefix("edge-"))


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
