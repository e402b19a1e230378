"""An edge process killed with SIGKILL while it carries pushes to the origin, in each phase
(a blob's upload, a manifest pushed by digest, a tag, between two pushes): after a restart
everything reaches the origin, once each, in push order."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import REPLICATOR
from tests.edges import Upstream
from tests.integration.test_edge_pushes import audit
from tests.process import EdgeProcess
from tests.support import Image, make_image, push_image, registry_auth

pytestmark = pytest.mark.fault

PHASES = {
    "blob upload": "POST /blobs/uploads/?digest=",
    "manifest": "PUT /manifests/sha256:",
    "tag": "PUT /manifests/v1",
}


@pytest.fixture
def origin(replicating: Upstream) -> Upstream:
    return replicating


async def origin_tag(origin: Upstream, tag: str) -> str | None:
    async with (
        aiohttp.ClientSession(
            base_url=origin.url, middlewares=(registry_auth("admin", origin.password),)
        ) as http,
        http.head(f"/v2/team/app/manifests/{tag}") as r,
    ):
        return r.headers.get("Docker-Content-Digest") if r.status == 200 else None


async def wait_for(condition: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        result = condition() if callable(condition) else condition
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("phase", [*PHASES, "between items"])
async def test_a_killed_edge_resumes_its_journal(
    origin: Upstream, tmp_path: Path, phase: str
) -> None:
    edge = EdgeProcess(
        origin.url,
        tmp_path / "edge",
        tmp_path / "edge.log",
        env={
            "WHARF_EDGE_REPLICATION_USERNAME": REPLICATOR[0],
            "WHARF_EDGE_REPLICATION_PASSWORD": REPLICATOR[1],
            "WHARF_EDGE_REPLICATION_RETRY_MAX_SECONDS": "0.5",
            "WHARF_EDGE_SWARM": "false",
        },
    )
    first, second = make_image(f"{phase}-1", layers=2), make_image(f"{phase}-2", layers=2)
    slow = PHASES.get(phase)
    if slow is not None:
        origin.faults.slow[slow] = 60.0  # the edge gets that far, and hangs there
    await edge.start()
    try:
        await push_both(edge, origin, first, second)  # acknowledged: they must arrive
        if slow is not None:
            await wait_for(lambda: origin.blob_gets[f"SLOW {slow}"] > 0)
        else:
            await wait_for(lambda: _has_manifest(origin, first.digest))
        await edge.kill()
        origin.faults.slow.clear()
        await edge.start()  # the same data dir, the same journal
        await wait_for(lambda: _tag_is(origin, "v1", second.digest))
    finally:
        await edge.stop_quietly()
    assert await _has_manifest(origin, first.digest)
    pushes = [e for e in await audit(origin) if e.get("repository") == "team/app"]
    assert [e["reference"] for e in pushes] == [first.digest, second.digest]  # once, in order
    assert {e["actor"] for e in pushes} == {"admin"}


async def push_both(edge: EdgeProcess, origin: Upstream, first: Image, second: Image) -> None:
    """The first image by digest (no tag), then the second to tag v1."""
    async with aiohttp.ClientSession(
        base_url=edge.url, middlewares=(registry_auth("admin", origin.password),)
    ) as http:
        await push_image(http, "team/app", first.digest, first)
        await push_image(http, "team/app", "v1", second)


async def _has_manifest(origin: Upstream, digest: str) -> bool:
    async with (
        aiohttp.ClientSession(
            base_url=origin.url, middlewares=(registry_auth("admin", origin.password),)
        ) as http,
        http.head(f"/v2/team/app/manifests/{digest}") as r,
    ):
        return r.status == 200


async def _tag_is(origin: Upstream, tag: str, digest: str) -> bool:
    return await origin_tag(origin, tag) == digest
