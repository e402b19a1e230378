"""The edge in front of a real origin: hits from disk, one upstream fetch per miss however
many clients ask, nothing partial or corrupt ever served, and the cache kept within bounds."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge.config import Mirror
from edge.keys import STORE
from ocicore.digest import Digest
from origin.config import OriginConfig
from tests.edges import Upstream, settled, start_edge, start_origin
from tests.support import (
    OCI_MANIFEST,
    make_image,
    push_blob,
    push_image,
    registry_auth,
    sample,
    sha256,
)

MiB = 1 << 20


@pytest.fixture
async def edge(upstream: Upstream, tmp_path: Path) -> AsyncIterator[TestServer]:
    server = await start_edge(upstream, tmp_path / "edge")
    yield server
    await server.close()


def session(server: TestServer | Upstream, upstream: Upstream) -> aiohttp.ClientSession:
    url = server.url if isinstance(server, Upstream) else str(server.make_url(""))
    return aiohttp.ClientSession(
        base_url=url, middlewares=(registry_auth("admin", upstream.password),)
    )


async def fetch(client: aiohttp.ClientSession, path: str) -> bytes:
    async with client.get(path, headers={"Accept": OCI_MANIFEST}) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_pulls_through_the_edge_and_the_second_one_stays_local(
    upstream: Upstream, edge: TestServer
) -> None:
    image = make_image("through-the-edge", layers=3)
    async with session(upstream, upstream) as origin:
        await push_image(origin, "team/app", "v1", image)
    async with session(edge, upstream) as client:
        for _ in range(2):
            assert await fetch(client, "/v2/team/app/manifests/v1") == image.manifest
            for data in image.blobs:
                assert await fetch(client, f"/v2/team/app/blobs/{sha256(data)}") == data
    assert all(upstream.blob_gets[sha256(b)] == 1 for b in image.blobs)  # then from disk


@pytest.mark.parametrize("swarm", [False, True], ids=["http", "swarm"])
async def test_fifty_concurrent_cold_requests_make_one_upstream_fetch(
    upstream: Upstream, tmp_path: Path, swarm: bool
) -> None:
    edge = await start_edge(upstream, tmp_path / "edge", swarm=swarm)
    try:
        await _fifty_at_once(upstream, edge, swarm)
    finally:
        await edge.close()


async def _fifty_at_once(upstream: Upstream, edge: TestServer, swarm: bool) -> None:
    data = os.urandom(64 * MiB)
    async with session(upstream, upstream) as origin:
        digest = await push_blob(origin, "team/big", data)
    expected = hashlib.sha256(data).hexdigest()

    async def pull(client: aiohttp.ClientSession) -> str:
        hasher = hashlib.sha256()
        async with client.get(f"/v2/team/big/blobs/{digest}") as r:
            assert r.status == 200
            async for chunk in r.content.iter_chunked(1 << 20):
                hasher.update(chunk)
        return hasher.hexdigest()

    async with session(edge, upstream) as client:
        await fetch(client, "/v2/")  # one token for everybody, as a node's runtime would
        results = await asyncio.gather(*(pull(client) for _ in range(50)))
    assert results == [expected] * 50
    # Over HTTP one GET; through the swarm (a lone edge: the origin is its web seed) ranges
    # of one copy and no plain GET.
    assert upstream.blob_gets[digest] == (0 if swarm else 1)
    assert (upstream.blob_gets[f"SEED {digest}"] > 0) == swarm
    assert await upstream.blob_bytes_sent() <= 1.05 * len(data)


@pytest.mark.parametrize("fault", ["corrupt", "cut"])
async def test_a_bad_upstream_body_is_never_served_nor_kept(
    upstream: Upstream, edge: TestServer, fault: str
) -> None:
    data = os.urandom(8 * MiB)
    async with session(upstream, upstream) as origin:
        digest = await push_blob(origin, "team/app", data)
    upstream.faults.blobs[digest] = (fault, len(data))
    async with session(edge, upstream) as client:
        for attempt in (1, 2):
            with pytest.raises(aiohttp.ClientPayloadError):
                async with client.get(f"/v2/team/app/blobs/{digest}") as r:
                    await r.read()
            assert upstream.blob_gets[digest] == attempt  # nothing was kept: asked again
        assert edge.app is not None
        assert edge.app[STORE].size(Digest.parse(digest)) is None
        del upstream.faults.blobs[digest]
        assert await fetch(client, f"/v2/team/app/blobs/{digest}") == data


async def test_a_client_that_leaves_does_not_abort_the_fill(
    upstream: Upstream, edge: TestServer
) -> None:
    data = os.urandom(32 * MiB)
    async with session(upstream, upstream) as origin:
        digest = await push_blob(origin, "team/app", data)
    async with session(edge, upstream) as client:
        async with client.get(f"/v2/team/app/blobs/{digest}") as r:
            await r.content.readexactly(1 << 20)  # then hang up
        assert edge.app is not None
        store = edge.app[STORE]
        for _ in range(200):
            if store.size(Digest.parse(digest)) is not None:
                break
            await asyncio.sleep(0.05)
        assert store.size(Digest.parse(digest)) == len(data)
        assert await fetch(client, f"/v2/team/app/blobs/{digest}") == data
    assert upstream.blob_gets[digest] == 1


async def test_a_cached_private_blob_needs_read_access_to_its_repository(
    upstream: Upstream, edge: TestServer
) -> None:
    image = make_image("private")
    async with session(upstream, upstream) as origin:
        await push_image(origin, "team/secret", "v1", image)
    layer = sha256(image.layers[0])
    async with session(edge, upstream) as client:
        await fetch(client, f"/v2/team/secret/blobs/{layer}")  # now cached
    async with aiohttp.ClientSession(base_url=str(edge.make_url(""))) as anonymous:
        async with anonymous.get(f"/v2/team/secret/blobs/{layer}") as r:
            assert r.status == 401
        # An anonymous token carries no pull for a private repository: still refused.
        async with anonymous.get(
            f"{upstream.url}/auth/token?service=wharf&scope=repository:team/secret:pull"
        ) as r:
            token = (await r.json())["token"]
        async with anonymous.get(
            f"/v2/team/secret/blobs/{layer}", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 401
            assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    # Nor through another repository the client may read but that does not hold it.
    async with session(upstream, upstream) as origin:
        await push_image(origin, "team/other", "v1", make_image("other"))
    async with session(edge, upstream) as client, client.get(f"/v2/team/other/blobs/{layer}") as r:
        assert r.status == 404
        assert (await r.json())["errors"][0]["code"] == "BLOB_UNKNOWN"


async def test_eviction_keeps_to_the_size_and_spares_what_is_being_read(
    upstream: Upstream, tmp_path: Path
) -> None:
    blobs = [os.urandom(4 * MiB) for _ in range(4)]
    async with session(upstream, upstream) as origin:
        digests = [await push_blob(origin, "team/app", b) for b in blobs]
    edge = await start_edge(upstream, tmp_path / "small", cache_size=10 * MiB)
    try:
        assert edge.app is not None
        store = edge.app[STORE]
        async with session(edge, upstream) as client:
            for digest in digests[:2]:
                await fetch(client, f"/v2/team/app/blobs/{digest}")
                await settled(edge)
            await fetch(client, f"/v2/team/app/blobs/{digests[0]}")  # 0 is now the fresher
            # 1 is the least recently used, but a reader holds it while 2 arrives.
            with store.reading(Digest.parse(digests[1])):
                await fetch(client, f"/v2/team/app/blobs/{digests[2]}")
                await settled(edge)
                assert store.size(Digest.parse(digests[1])) is not None
                assert store.size(Digest.parse(digests[0])) is None  # the next in line went
            await fetch(client, f"/v2/team/app/blobs/{digests[3]}")
            await settled(edge)
            kept = [store.size(Digest.parse(d)) is not None for d in digests]
            assert kept == [False, False, True, True]  # 1 went once its reader had let go
            assert store.total <= 10 * MiB
            for digest in digests:  # every one still pulls, the evicted ones from upstream
                assert hashlib.sha256(
                    await fetch(client, f"/v2/team/app/blobs/{digest}")
                ).hexdigest() == digest.removeprefix("sha256:")
    finally:
        await edge.close()


async def test_a_restarted_edge_serves_its_cache_while_the_origin_is_down(
    upstream: Upstream, tmp_path: Path
) -> None:
    image = make_image("survivor", layers=2)
    async with session(upstream, upstream) as origin:
        await push_image(origin, "team/app", "v1", image)
        token = await _token(origin, upstream, "repository:team/app:pull")
    auth = {"Authorization": f"Bearer {token}", "Accept": OCI_MANIFEST}
    data_dir = tmp_path / "edge"
    first = await start_edge(upstream, data_dir, tag_ttl_seconds=0.01)
    async with aiohttp.ClientSession(base_url=str(first.make_url(""))) as client:
        async with client.get("/v2/team/app/manifests/v1", headers=auth) as r:
            assert r.status == 200
        for blob in image.blobs:
            async with client.get(f"/v2/team/app/blobs/{sha256(blob)}", headers=auth) as r:
                assert await r.read() == blob
    await first.close()

    upstream.faults.down = True  # the origin answers 503 to everything from now on
    second = await start_edge(upstream, data_dir, tag_ttl_seconds=0.01)
    try:
        async with aiohttp.ClientSession(base_url=str(second.make_url(""))) as client:
            async with client.get("/v2/team/app/manifests/v1", headers=auth) as r:
                assert r.status == 200
                assert await r.read() == image.manifest
                assert r.headers["Warning"].startswith("110")  # stale, and saying so
            for blob in image.blobs:
                async with client.get(f"/v2/team/app/blobs/{sha256(blob)}", headers=auth) as r:
                    assert await r.read() == blob
            async with client.get("/v2/team/app/manifests/v2", headers=auth) as r:
                assert r.status == 503
                assert (await r.json())["errors"][0]["code"] == "UNAVAILABLE"
            unknown = sha256(b"never pushed")
            async with client.get(f"/v2/team/app/blobs/{unknown}", headers=auth) as r:
                assert r.status in (502, 503)
    finally:
        await second.close()


async def _token(client: aiohttp.ClientSession, upstream: Upstream, scope: str) -> str:
    async with client.get(
        "/auth/token",
        params={"service": "wharf", "scope": scope},
        headers={"Authorization": aiohttp.encode_basic_auth("admin", upstream.password())},
        middlewares=(),
    ) as r:
        return str((await r.json())["token"])


async def test_tags_are_cached_for_their_ttl_then_revalidated(
    upstream: Upstream, tmp_path: Path
) -> None:
    first, second = make_image("first"), make_image("second")
    async with session(upstream, upstream) as origin:
        await push_image(origin, "team/app", "latest", first)
    edge = await start_edge(upstream, tmp_path / "edge", tag_ttl_seconds=0.5)
    try:
        async with session(edge, upstream) as client:
            assert await fetch(client, "/v2/team/app/manifests/latest") == first.manifest
            async with session(upstream, upstream) as origin:
                await push_image(origin, "team/app", "latest", second)  # the tag moves
            # Within the TTL the edge answers from its cache...
            assert await fetch(client, "/v2/team/app/manifests/latest") == first.manifest
            await asyncio.sleep(0.6)
            # ...and after it, asks the origin (a HEAD) and follows the move.
            assert await fetch(client, "/v2/team/app/manifests/latest") == second.manifest
            by_digest = f"/v2/team/app/manifests/{first.digest}"
            assert await fetch(client, by_digest) == first.manifest
    finally:
        await edge.close()


async def test_misses_are_remembered_and_ranges_served(
    upstream: Upstream, edge: TestServer
) -> None:
    data = os.urandom(3 * MiB)
    async with session(upstream, upstream) as origin:
        digest = await push_blob(origin, "team/app", data)
    missing = sha256(b"nobody pushed this")
    async with session(edge, upstream) as client:
        for _ in range(3):
            async with client.get(f"/v2/team/app/blobs/{missing}") as r:
                assert r.status == 404
                assert (await r.json())["errors"][0]["code"] == "BLOB_UNKNOWN"
        # The 404 (to the HEAD that asks how large the blob is) was remembered.
        assert upstream.blob_gets[f"HEAD {missing}"] == 1
        assert upstream.blob_gets[missing] == 0
        await fetch(client, f"/v2/team/app/blobs/{digest}")
        await settled(edge)
        async with client.get(
            f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=1000-1999"}
        ) as r:
            assert r.status == 206
            assert await r.read() == data[1000:2000]
            assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
        async with client.head(f"/v2/team/app/blobs/{digest}") as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == str(len(data))
        async with client.get("/metrics") as r:
            metrics = await r.text()
    assert sample(metrics, "wharf_edge_cache_hits_total", kind="blob") == 2
    assert sample(metrics, "wharf_edge_cache_misses_total", kind="blob") == 4
    assert sample(metrics, "wharf_edge_cache_bytes") == len(data)
    assert sample(metrics, "wharf_edge_fill_failures_total", reason="not_found") == 1
    assert sample(metrics, "wharf_edge_served_bytes_total", source="upstream") == len(data)


async def test_fills_beyond_the_cap_are_told_to_retry(upstream: Upstream, tmp_path: Path) -> None:
    slow, other = os.urandom(MiB), os.urandom(MiB)
    async with session(upstream, upstream) as origin:
        slow_digest = await push_blob(origin, "team/app", slow)
        other_digest = await push_blob(origin, "team/app", other)
    upstream.faults.blobs[slow_digest] = ("slow", len(slow))
    edge = await start_edge(upstream, tmp_path / "edge", max_fills=1)
    try:
        async with session(edge, upstream) as client:
            await fetch(client, "/v2/")
            first = asyncio.create_task(fetch(client, f"/v2/team/app/blobs/{slow_digest}"))
            await asyncio.sleep(0.3)  # its fill is running, slowly
            async with client.get(f"/v2/team/app/blobs/{other_digest}") as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "2"
            assert await first == slow
            await settled(edge)
            assert await fetch(client, f"/v2/team/app/blobs/{other_digest}") == other
    finally:
        await edge.close()


async def test_a_mirror_behind_token_auth_is_followed_with_the_edges_own_credentials(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Another Wharf origin plays the mirrored registry: private repositories, token auth.
    other = await start_origin(
        OriginConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "other",
            argon2_time_cost=1,
            argon2_memory_kib=1024,
        )
    )
    try:
        image = make_image("mirrored")
        async with session(other, other) as client:
            await push_image(client, "vendor/tool", "v1", image)
        mirror = Mirror(
            namespace="vendor.example",
            url=other.url,
            username="admin",
            password=other.password(),
        )
        edge = await start_edge(upstream, tmp_path / "edge", mirrors=(mirror,))
        try:
            async with aiohttp.ClientSession(base_url=str(edge.make_url(""))) as anonymous:
                path = "/v2/vendor.example/vendor/tool/manifests/v1"
                assert await fetch(anonymous, path) == image.manifest
                assert await fetch(anonymous, "/v2/vendor/tool/manifests/v1?ns=vendor.example") == (
                    image.manifest
                )
                for blob in image.blobs:
                    got = await fetch(
                        anonymous, f"/v2/vendor.example/vendor/tool/blobs/{sha256(blob)}"
                    )
                    assert got == blob
                # The origin's own namespaces still need tokens.
                async with anonymous.get("/v2/vendor/tool/manifests/v1") as r:
                    assert r.status == 401
        finally:
            await edge.close()
    finally:
        await other.server.close()


async def test_clients_arriving_together_share_one_manifest_round_trip(
    upstream: Upstream, edge: TestServer
) -> None:
    image = make_image("herd")
    async with session(upstream, upstream) as origin:
        await push_image(origin, "team/app", "v1", image)
    async with session(edge, upstream) as client:
        await fetch(client, "/v2/")
        bodies = await asyncio.gather(
            *(fetch(client, "/v2/team/app/manifests/v1") for _ in range(30))
        )
    assert bodies == [image.manifest] * 30
    assert (upstream.blob_gets["HEAD v1"], upstream.blob_gets["GET v1"]) == (1, 1)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v2/Team/App/blobs/sha256:" + "a" * 64, "NAME_INVALID"),
        ("/v2/team/app/blobs/sha256:xyz", "DIGEST_INVALID"),
        ("/v2/team/app/manifests/" + "t" * 200, "MANIFEST_INVALID"),
    ],
)
async def test_bad_requests_at_the_edge_change_nothing(
    upstream: Upstream, edge: TestServer, path: str, code: str
) -> None:
    assert edge.app is not None
    store = edge.app[STORE]
    before = (store.total, len(store), sorted(str(p) for p in store.files.root.rglob("*")))
    async with session(edge, upstream) as client, client.get(path) as r:
        assert r.status in (400, 401)
        if r.status == 400:
            assert (await r.json())["errors"][0]["code"] == code
    after = (store.total, len(store), sorted(str(p) for p in store.files.root.rglob("*")))
    assert after == before
    assert sum(upstream.blob_gets.values()) == 0  # nothing was asked of the origin
