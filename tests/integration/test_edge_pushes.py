"""Pushes at an edge: acknowledged once stored and journaled, pullable there at once, carried
to the origin as the user who pushed, through an origin that goes down, and past a tag that
somebody moved at the origin meanwhile (the origin's tag stays)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge.keys import STORE
from ocicore.digest import Digest
from tests.conftest import REPLICATOR
from tests.edges import Upstream, start_edge
from tests.support import (
    make_image,
    push_blob,
    push_image,
    registry_auth,
    sample,
    token_for,
    until,
)


@pytest.fixture
def origin(replicating: Upstream) -> Upstream:
    return replicating


@pytest.fixture
def edge(pushing_edge: TestServer) -> TestServer:
    return pushing_edge


def client(server: TestServer | Upstream, origin: Upstream) -> aiohttp.ClientSession:
    url = server.url if isinstance(server, Upstream) else str(server.make_url(""))
    return aiohttp.ClientSession(
        base_url=url, middlewares=(registry_auth("admin", origin.password),)
    )


async def tag_at(server: TestServer | Upstream, origin: Upstream, tag: str) -> str | None:
    async with client(server, origin) as http, http.head(f"/v2/team/app/manifests/{tag}") as r:
        return r.headers.get("Docker-Content-Digest") if r.status == 200 else None


async def metric(edge: TestServer, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{edge.make_url('')}/metrics") as r:
        return sample(await r.text(), name, **labels)


async def audit(origin: Upstream) -> list[dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{origin.url}/api/v1/audit",
            params={"action": "push", "limit": "1000"},
            headers={"Authorization": aiohttp.encode_basic_auth("admin", origin.password())},
        ) as r,
    ):
        assert r.status == 200, await r.text()
        body = await r.json()
        return list(body["events"] if isinstance(body, dict) else body)


async def test_a_push_at_the_edge_is_pullable_there_at_once_and_soon_at_the_origin(
    origin: Upstream, edge: TestServer
) -> None:
    image = make_image("pushed-at-the-edge", layers=3)
    async with client(edge, origin) as http:
        await push_image(http, "team/app", "v1", image)
        # At once, from the edge itself: the manifest by tag and every blob.
        async with http.get(
            "/v2/team/app/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ) as r:
            assert r.status == 200
            assert await r.read() == image.manifest
        for blob in image.blobs:
            async with http.get(f"/v2/team/app/blobs/{Digest.of(blob, 'sha256')}") as r:
                assert await r.read() == blob

    await until(lambda: _equals(tag_at(origin, origin, "v1"), image.digest))
    async with client(origin, origin) as http:
        async with http.get("/v2/team/app/manifests/v1") as r:
            assert await r.read() == image.manifest
        for blob in image.blobs:
            async with http.get(f"/v2/team/app/blobs/{Digest.of(blob, 'sha256')}") as r:
                assert await r.read() == blob

    pushes = [e for e in await audit(origin) if e.get("repository") == "team/app"]
    assert [e["actor"] for e in pushes] == ["admin"]  # the user who pushed, not the edge
    assert pushes[0]["detail"] == {"tag": "v1", "via": REPLICATOR[0]}
    await until(lambda: _zero(metric(edge, "wharf_edge_replication_pending")))
    assert edge.app is not None
    store = edge.app[STORE]  # the origin has them: they may be evicted like any cached blob
    assert not any(store.index.get(f"pin:{Digest.of(b, 'sha256')}") for b in image.blobs)


async def test_pushes_wait_for_an_origin_that_is_down(origin: Upstream, edge: TestServer) -> None:
    first, second = make_image("while-down-1"), make_image("while-down-2")
    async with aiohttp.ClientSession(base_url=origin.url) as http:
        token = await token_for(http, origin.data_dir, "repository:team/app:pull,push")
    origin.faults.down = True
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url=str(edge.make_url("")), headers=headers) as http:
        await push_image(http, "team/app", "v1", first)
        await push_image(http, "team/app", "v1", second)  # the same tag, moved again
        assert await metric(edge, "wharf_edge_replication_pending") == 2
    await asyncio.sleep(1.0)  # the replicator tries, and backs off
    origin.faults.down = False
    await until(lambda: _equals(tag_at(origin, origin, "v1"), second.digest))
    async with (
        client(origin, origin) as http,
        http.head(f"/v2/team/app/manifests/{first.digest}") as r,
    ):
        assert r.status == 200  # the first push reached the origin too
    order = [e["reference"] for e in await audit(origin) if e.get("repository") == "team/app"]
    assert order == [first.digest, second.digest]  # in push order, each once
    assert await metric(edge, "wharf_edge_replication_failures_total", reason="retry") > 0


async def test_a_tag_moved_at_the_origin_meanwhile_stays_and_the_conflict_is_counted(
    origin: Upstream, edge: TestServer
) -> None:
    before, ours, theirs = make_image("base"), make_image("ours"), make_image("theirs")
    async with client(origin, origin) as http:
        await push_image(http, "team/app", "v1", before)
    origin.faults.act_as_down = True  # the edge cannot carry anything for now
    async with client(edge, origin) as http:
        await push_image(http, "team/app", "v1", ours)  # accepted over v1 = before
    async with client(origin, origin) as http:
        await push_image(http, "team/app", "v1", theirs)  # somebody moves it at the origin
    origin.faults.act_as_down = False
    await until(lambda: _positive(metric(edge, "wharf_edge_replication_conflicts_total")))
    assert await tag_at(origin, origin, "v1") == theirs.digest  # the origin's tag stays
    async with (
        client(origin, origin) as http,
        http.head(f"/v2/team/app/manifests/{ours.digest}") as r,
    ):
        assert r.status == 200  # the pushed manifest is there, by digest
    assert await tag_at(edge, origin, "v1") == theirs.digest  # and the edge follows the origin


async def test_bad_pushes_at_the_edge_get_the_error_the_spec_names(
    origin: Upstream, edge: TestServer
) -> None:
    image = make_image("incomplete")
    async with client(edge, origin) as http:
        async with http.put(
            "/v2/team/app/manifests/v1",
            data=image.manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ) as r:
            assert r.status == 400
            assert (await r.json())["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
        async with http.put(
            "/v2/team/app/manifests/v1",
            data=b"{not json",
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ) as r:
            assert r.status == 400
            assert (await r.json())["errors"][0]["code"] == "MANIFEST_INVALID"
        async with http.post(
            f"/v2/team/app/blobs/uploads/?digest={Digest.of(b'x', 'sha256')}", data=b"y"
        ) as r:
            assert r.status == 400
            assert (await r.json())["errors"][0]["code"] == "DIGEST_INVALID"
    assert await metric(edge, "wharf_edge_replication_pending") == 0
    async with (
        aiohttp.ClientSession(base_url=str(edge.make_url(""))) as anonymous,
        anonymous.put("/v2/team/app/manifests/v1", data=image.manifest) as r,
    ):
        assert r.status == 401


async def test_a_push_needs_push_rights(origin: Upstream, edge: TestServer) -> None:
    image = make_image("read-only")
    async with aiohttp.ClientSession(base_url=origin.url) as http:
        token = await token_for(http, origin.data_dir, "repository:team/app:pull")
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url=str(edge.make_url("")), headers=headers) as http:
        async with http.post("/v2/team/app/blobs/uploads/") as r:
            assert r.status == 401
        async with http.put("/v2/team/app/manifests/v1", data=image.manifest) as r:
            assert r.status == 401


async def _equals(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected


async def _zero(value: Awaitable[float]) -> bool:
    return await value == 0


async def _positive(value: Awaitable[float]) -> bool:
    return await value > 0


async def test_a_blob_pushed_to_two_repositories_is_uploaded_once_and_mounted(
    origin: Upstream, edge: TestServer
) -> None:
    image = make_image("two-repositories", layers=2)
    async with client(edge, origin) as http:
        await push_image(http, "team/app", "v1", image)
        await push_image(http, "team/copy", "v1", image)

    async def both() -> bool:
        async with client(origin, origin) as http:
            for name in ("team/app", "team/copy"):
                async with http.head(f"/v2/{name}/manifests/v1") as r:
                    if r.headers.get("Docker-Content-Digest") != image.digest:
                        return False
        return True

    await until(both)
    blobs = len(image.blobs)
    assert await metric(edge, "wharf_edge_replication_replicated_total", kind="blob") == blobs
    assert await metric(edge, "wharf_edge_replication_replicated_total", kind="mount") == blobs
    sent = await metric(edge, "wharf_edge_replication_sent_bytes_total")
    assert sent == sum(len(b) for b in image.blobs)  # each blob's bytes went up once


async def test_a_blob_cached_for_another_repository_cannot_be_claimed_by_a_push(
    origin: Upstream, edge: TestServer
) -> None:
    """Someone pulled team/secret through the edge; a manifest pushed to team/app naming its
    blob must not make the edge hand those bytes to team/app."""
    secret = make_image("secret", layers=1)
    async with client(origin, origin) as http:
        await push_image(http, "team/secret", "v1", secret)
    async with client(edge, origin) as http:
        for blob in secret.blobs:  # now cached at the edge, for team/secret
            async with http.get(f"/v2/team/secret/blobs/{Digest.of(blob, 'sha256')}") as r:
                assert r.status == 200
        async with http.put(
            "/v2/team/app/manifests/stolen",
            data=secret.manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ) as r:
            assert r.status == 400
            assert (await r.json())["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert await metric(edge, "wharf_edge_replication_pending") == 0


async def test_acting_for_a_user_is_for_replicators_and_only_pulls_and_pushes(
    origin: Upstream,
) -> None:
    async def ask(user: str, password: str) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{origin.url}/auth/token",
                params=[
                    ("service", "wharf"),
                    ("act_as", "admin"),
                    ("scope", "repository:team/app:pull,push,delete"),
                    ("scope", "api:v1:*"),
                    ("scope", "registry:catalog:*"),
                ],
                headers={"Authorization": aiohttp.encode_basic_auth(user, password)},
            ) as r,
        ):
            return r.status, await r.json()

    status, body = await ask(*REPLICATOR)
    assert status == 200
    assert body["scope"] == "repository:team/app:pull,push"  # the admin's rights, narrowed
    status, _ = await ask("admin", origin.password())  # an admin is no replicator
    assert status == 403


async def test_blobs_pushed_without_a_manifest_are_let_go(origin: Upstream, tmp_path: Path) -> None:
    """An abandoned push must not pin the edge's disk for ever; a push still on its way
    keeps its blobs."""
    edge = await start_edge(
        origin,
        tmp_path / "short",
        replication_username=REPLICATOR[0],
        replication_password=REPLICATOR[1],
        pushed_blob_ttl_seconds=0.4,
    )
    try:
        assert edge.app is not None
        store = edge.app[STORE]
        pending = make_image("kept-while-pending", layers=1)
        origin.faults.act_as_down = True  # its push stays pending
        async with client(edge, origin) as http:
            orphan = await push_blob(http, "team/app", b"no manifest will name me")
            await push_image(http, "team/app", "v1", pending)
        assert store.index.get(f"pin:{orphan}")
        await until(lambda: _unpinned(store, orphan))
        assert all(store.index.get(f"pin:{Digest.of(b, 'sha256')}") for b in pending.blobs)
        assert store.size(Digest.parse(orphan)) is not None  # still cached, just evictable
    finally:
        origin.faults.act_as_down = False
        await edge.close()


async def _unpinned(store: Any, digest: str) -> bool:
    return not store.index.get(f"pin:{digest}")
