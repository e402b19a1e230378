"""Membership through Consul (the double of tests/consul_double.py, driven by the real
py-consul client inside Wharf): nodes register and see each other, a node killed with -9
leaves the view once its check fails, a Consul outage keeps every view and serving going, and
Consul coming back gets the registrations restored."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from origin.app import create_app as create_origin
from origin.config import OriginConfig
from tests.consul_double import ConsulDouble
from tests.process import EdgeProcess
from tests.support import free_port

pytestmark = pytest.mark.fault


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    double = ConsulDouble(
        ("host-origin", "host-a", "host-b", "host-c"),
        reap_interval=0.2,
        min_deregister=0.5,
        min_check_interval=0.1,
    )
    async with double:
        yield double


async def view(url: str) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/_wharf/members") as r:
        return {m["id"]: m for m in await r.json()}


async def eventually(check: Callable[[], Any], seconds: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            if await check():
                return
        except (aiohttp.ClientError, OSError):
            pass
        if loop.time() > deadline:
            raise AssertionError("not within the time allowed")
        await asyncio.sleep(0.1)


async def test_nodes_find_each_other_and_survive_consul_trouble(
    consul: ConsulDouble, origin_config: OriginConfig, tmp_path: Path
) -> None:
    port = free_port()
    origin_url = f"http://127.0.0.1:{port}"
    config = dataclasses.replace(
        origin_config,
        listen=f"127.0.0.1:{port}",
        node_id="origin",
        region="eu",
        discovery="consul",
        consul_address=consul.url_of("host-origin"),
        advertise_url=origin_url,
        consul_check_interval="200ms",
        consul_deregister_after="1s",
    )
    origin = TestServer(create_origin(config), port=port)
    await origin.start_server()
    edges = {}
    for name, region in (("a", "eu"), ("b", "eu"), ("c", "us")):
        env = {
            "WHARF_EDGE_DISCOVERY": "consul",
            "WHARF_EDGE_CONSUL_ADDRESS": consul.url_of(f"host-{name}"),
            "WHARF_EDGE_NODE_ID": f"edge-{name}",
            "WHARF_EDGE_REGION": region,
            "WHARF_EDGE_CONSUL_CHECK_INTERVAL": "200ms",
            "WHARF_EDGE_CONSUL_DEREGISTER_AFTER": "1s",
        }
        edge = EdgeProcess(origin_url, tmp_path / name, tmp_path / f"{name}.log", env=env)
        await edge.start()
        edges[name] = edge
    everyone = {"origin", "edge-a", "edge-b", "edge-c"}
    try:

        async def all_see(ids: set[str], urls: list[str]) -> bool:
            views = [set(await view(u)) for u in urls]
            return all(v == ids for v in views)

        urls = [origin_url, *(e.url for e in edges.values())]
        await eventually(lambda: all_see(everyone, urls))
        seen = await view(edges["a"].url)
        assert (seen["edge-c"]["region"], seen["origin"]["role"]) == ("us", "origin")

        # Killed with -9: no deregistration; it leaves the view once its check fails.
        await edges["b"].kill()
        survivors = [origin_url, edges["a"].url, edges["c"].url]
        await eventually(lambda: all_see(everyone - {"edge-b"}, survivors))

        # Consul down: views are kept, serving goes on.
        await consul.stop()
        await asyncio.sleep(1.0)
        assert set(await view(edges["a"].url)) == everyone - {"edge-b"}
        async with aiohttp.ClientSession() as http, http.get(f"{edges['a'].url}/v2/") as r:
            assert r.status == 401  # answering, with the origin's challenge

        # Consul back, having forgotten everything: the nodes register again.
        await consul.restart(keep_state=False)
        await eventually(lambda: all_see(everyone - {"edge-b"}, survivors), seconds=30)
    finally:
        for edge in edges.values():
            if edge.url:
                await edge.stop_quietly()
        await origin.close()
