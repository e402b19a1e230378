"""Replication rules at the origin: a push there appears on the edges of the regions a rule
names before anyone pulls there, not elsewhere; tag moves and deletions follow; an edge that
was away catches up from its cursor. Rules are managed through the admin API, and audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from edge.keys import MANIFESTS, STORE
from ocicore.digest import Digest
from tests.conftest import REPLICATOR
from tests.edges import Upstream, start_edge
from tests.support import make_image, push_image, registry_auth, until


def admin(origin: Upstream) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth("admin", origin.password())}


async def api(origin: Upstream, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{origin.url}/api/v1{path}", headers=admin(origin), **kwargs) as r,
    ):
        return r.status, await r.json() if r.content_type == "application/json" else None


async def start(origin: Upstream, folder: Path, region: str) -> TestServer:
    return await start_edge(
        origin,
        folder,
        region=region,
        node_id=f"edge-{region}",
        replication_username=REPLICATOR[0],
        replication_password=REPLICATOR[1],
        swarm=False,
    )


@pytest.fixture
async def regions(replicating: Upstream, tmp_path: Path) -> AsyncIterator[dict[str, TestServer]]:
    status, rule = await api(
        replicating,
        "POST",
        "/replication/rules",
        json={"repositories": "team-a/*", "regions": ["eu"]},
    )
    assert status == 201, rule
    edges = {r: await start(replicating, tmp_path / r, r) for r in ("eu", "us")}
    yield edges
    for edge in edges.values():
        await edge.close()


def holds(edge: TestServer, image_blobs: tuple[bytes, ...], manifest: str) -> bool:
    assert edge.app is not None
    store = edge.app[STORE]
    return edge.app[MANIFESTS].has(manifest) and all(
        store.size(Digest.of(blob, "sha256")) is not None for blob in image_blobs
    )


def tag_of(edge: TestServer, repository: str, tag: str) -> str | None:
    assert edge.app is not None
    return edge.app[MANIFESTS].tag_digest(f"origin:{repository}", tag)


async def push(origin: Upstream, repository: str, tag: str, seed: str) -> Any:
    image = make_image(seed)
    async with aiohttp.ClientSession(
        base_url=origin.url, middlewares=(registry_auth("admin", origin.password),)
    ) as http:
        await push_image(http, repository, tag, image)
    return image


async def test_a_rule_brings_pushes_to_its_region_before_any_pull(
    replicating: Upstream, regions: dict[str, TestServer], tmp_path: Path
) -> None:
    eu, us = regions["eu"], regions["us"]
    first = await push(replicating, "team-a/app", "v1", "feed-1")
    await until(lambda: holds(eu, first.blobs, first.digest))
    await until(lambda: tag_of(eu, "team-a/app", "v1") == first.digest)  # set once all is in
    other = await push(replicating, "team-b/app", "v1", "not-covered")
    await asyncio.sleep(0.5)
    assert not holds(us, first.blobs, first.digest)  # no rule gives us team-a
    assert not holds(eu, other.blobs, other.digest)  # nor eu team-b

    # A pull at the eu edge asks the origin for no blob: they are there already.
    before = sum(replicating.blob_gets[str(Digest.of(b, "sha256"))] for b in first.blobs)
    async with aiohttp.ClientSession(
        base_url=str(eu.make_url("")), middlewares=(registry_auth("admin", replicating.password),)
    ) as http:
        for blob in first.blobs:
            async with http.get(f"/v2/team-a/app/blobs/{Digest.of(blob, 'sha256')}") as r:
                assert await r.read() == blob
    assert sum(replicating.blob_gets[str(Digest.of(b, "sha256"))] for b in first.blobs) == before

    # The tag moves at the origin: it moves at the edge. The tag goes: it goes at the edge.
    second = await push(replicating, "team-a/app", "v1", "feed-2")
    await until(lambda: tag_of(eu, "team-a/app", "v1") == second.digest)
    async with (
        aiohttp.ClientSession(
            base_url=replicating.url, middlewares=(registry_auth("admin", replicating.password),)
        ) as http,
        http.delete(f"/v2/team-a/app/manifests/{second.digest}") as r,
    ):
        assert r.status == 202
    await until(lambda: tag_of(eu, "team-a/app", "v1") is None)

    # An edge that was away catches up from its cursor.
    await eu.close()
    third = await push(replicating, "team-a/app", "v3", "while-away")
    again = await start(replicating, tmp_path / "eu", "eu")
    try:
        await until(lambda: holds(again, third.blobs, third.digest))
        await until(lambda: tag_of(again, "team-a/app", "v3") == third.digest)
    finally:
        await again.close()


async def test_rules_are_managed_by_admins_and_audited(replicating: Upstream) -> None:
    status, rule = await api(
        replicating,
        "POST",
        "/replication/rules",
        json={"repositories": "ml/*", "tags": "release-*", "regions": ["eu", "ap"]},
    )
    assert status == 201
    assert (rule["repositories"], rule["tags"], rule["regions"]) == (
        "ml/*",
        "release-*",
        ["ap", "eu"],
    )
    status, listed = await api(replicating, "GET", "/replication/rules")
    assert [r["id"] for r in listed] == [rule["id"]]
    status, _ = await api(
        replicating, "POST", "/replication/rules", json={"repositories": "ML/../x", "regions": []}
    )
    assert status == 400
    status, unchanged = await api(replicating, "GET", "/replication/rules")
    assert unchanged == listed  # the refused rule changed nothing
    for bad in (
        {"region": "EU!"},
        {"region": "eu", "limit": "0"},
        {"region": "eu", "after": "-1"},
        {"region": "eu", "wait": "31"},
        {"region": "eu", "after": "x"},
    ):
        status, body = await api(replicating, "GET", "/replication/events", params=bad)
        assert status == 400, bad
        assert body["errors"][0]["code"] == "INVALID_REQUEST"
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{replicating.url}/api/v1/replication/events",
            params={"region": "eu"},
            headers={"Authorization": aiohttp.encode_basic_auth(*REPLICATOR)},
        ) as r,
    ):
        assert r.status == 200  # the replicator reads the feed
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{replicating.url}/api/v1/replication/rules",
            json={"repositories": "*", "regions": ["eu"]},
            headers={"Authorization": aiohttp.encode_basic_auth(*REPLICATOR)},
        ) as r,
    ):
        assert r.status == 403  # but may not change the rules
    status, _ = await api(replicating, "DELETE", f"/replication/rules/{rule['id']}")
    assert status == 204
    status, _ = await api(replicating, "DELETE", f"/replication/rules/{rule['id']}")
    assert status == 404
    status, page = await api(replicating, "GET", "/audit", params={"action": "rule.create"})
    seen = [(e["actor"], e["outcome"]) for e in page["events"]]
    assert seen == [("admin", "ok"), (REPLICATOR[0], "denied")]  # the refusal too
