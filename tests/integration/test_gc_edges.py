"""Edges evict what the origin's garbage collection deleted: a manifest deleted there is
forgotten (no longer served from the cache), and a blob whose bytes it deleted leaves the edge's disk, in every region (not only
those a replication rule covers)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest

from edge.keys import MANIFESTS, STORE
from ocicore.digest import Digest
from origin.config import OriginConfig
from tests.conftest import REPLICATOR
from tests.edges import Upstream, start_edge
from tests.support import make_image, push_image, registry_auth, until

GRACE = 0.5


@pytest.fixture
async def origin_config(origin_config: OriginConfig) -> OriginConfig:
    return dataclasses.replace(origin_config, gc_grace_seconds=GRACE, gc_interval_seconds=0.2)


async def test_an_edge_evicts_what_the_origin_collected(
    replicating: Upstream, tmp_path: Path
) -> None:
    edge = await start_edge(
        replicating,
        tmp_path / "edge",
        region="us",
        node_id="edge-us",
        replication_username=REPLICATOR[0],
        replication_password=REPLICATOR[1],
        swarm=False,
    )
    assert edge.app is not None
    store, manifests = edge.app[STORE], edge.app[MANIFESTS]
    image, keeper = make_image("collected"), make_image("kept")
    admin = (registry_auth("admin", replicating.password),)
    try:
        async with aiohttp.ClientSession(base_url=replicating.url, middlewares=admin) as http:
            headers = {"Authorization": aiohttp.encode_basic_auth("admin", replicating.password())}
            async with http.put(
                "/api/v1/namespaces/admin/time-machine", json={"seconds": 0}, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
            await push_image(http, "admin/app", "v1", image)
            await push_image(http, "admin/app", "v2", keeper)
        async with aiohttp.ClientSession(
            base_url=str(edge.make_url("")), middlewares=admin
        ) as http:
            for reference, pulled in ((image.digest, image), ("v2", keeper)):
                async with http.get(f"/v2/admin/app/manifests/{reference}") as r:
                    assert r.status == 200
                for blob in pulled.blobs:
                    async with http.get(f"/v2/admin/app/blobs/{Digest.of(blob, 'sha256')}") as r:
                        assert await r.read() == blob
        digests = [Digest.of(blob, "sha256") for blob in image.blobs]
        assert all(store.size(d) is not None for d in digests)
        assert manifests.has(image.digest)

        async with (
            aiohttp.ClientSession(base_url=replicating.url, middlewares=admin) as http,
            http.delete(f"/v2/admin/app/manifests/{image.digest}") as r,
        ):
            assert r.status == 202
        # Passes run on the origin's timer: the links go, then (a grace period on) the bytes.
        await until(lambda: all(store.size(d) is None for d in digests), seconds=30)
        assert not any(store.path(d).exists() for d in digests)
        async with aiohttp.ClientSession(
            base_url=str(edge.make_url("")), middlewares=admin
        ) as http:
            async with http.get(f"/v2/admin/app/manifests/{image.digest}") as r:
                assert r.status == 404  # no longer served from the cache: the origin said so
            for blob in image.blobs:
                async with http.get(f"/v2/admin/app/blobs/{Digest.of(blob, 'sha256')}") as r:
                    assert r.status == 404
        for blob in keeper.blobs:  # what is still reachable stays cached
            assert store.size(Digest.of(blob, "sha256")) is not None
    finally:
        await edge.close()
