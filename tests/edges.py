"""An origin and edges in the test's event loop, with the origin's blob GETs counted (the
upstream's own count, as the edge issue asks) and faults it can be told to inject."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler, Middleware
from prometheus_client.parser import text_string_to_metric_families

from edge.app import create_app as create_edge
from edge.config import EdgeConfig
from edge.keys import BLOBS
from gossip.node import StaticPeer
from gossip.ring import home_edge
from ocicore.auth.enforce import SEED_PARAM
from ocicore.web.accesslog import AccessLogger
from origin.app import create_app as create_origin
from origin.config import OriginConfig
from tests.support import free_port, push_blob, registry_auth


@dataclass
class Faults:
    """What the origin does wrong, by blob digest: ("corrupt", size): other bytes of the same
    length; ("cut", size): dies half-way through the body; ("slow", size): answers at once,
    sends the body after a second. ``web_seed_answers``: how many requests of an edge's
    web seed (BitTorrent) are answered before the rest get 503 (None: all)."""

    blobs: dict[str, tuple[str, int]] = field(default_factory=dict)
    down: bool = False
    web_seed_answers: int | None = None
    web_seed_delay: float = 0.0  # seconds before each web seed request is answered
    act_as_down: bool = False  # the token endpoint answers 503 to replicators acting for others
    # "<METHOD> <path substring>" -> seconds to hold such requests before handling them (until
    # the entry is removed; a request whose client went away meanwhile is never handled)
    slow: dict[str, float] = field(default_factory=dict)


@dataclass
class Upstream:
    server: TestServer
    data_dir: Path
    # GETs of blobs by digest; also "HEAD <digest>" of blobs, "SEED <digest>": GETs of a web
    # seed, "GET <reference>" and "HEAD <reference>" of manifests
    blob_gets: Counter[str]
    faults: Faults

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def password(self) -> str:
        return (self.data_dir / "admin-password").read_text().strip()

    async def blob_bytes_sent(self) -> float:
        """Blob bytes the origin has sent (its own metrics), to web seeds and GETs alike."""
        async with aiohttp.ClientSession() as client, client.get(f"{self.url}/metrics") as r:
            text = await r.text()
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "wharf_origin_http_sent_bytes_total" and "/blobs/" in s.labels["route"]
        )


def _observe(counts: Counter[str], faults: Faults) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if faults.down:
            raise web.HTTPServiceUnavailable
        if faults.act_as_down and "act_as" in request.query:
            raise web.HTTPServiceUnavailable
        for what in list(faults.slow):
            method, _, part = what.partition(" ")
            if request.method == method and part in request.path_qs:
                counts[f"SLOW {what}"] += 1
                deadline = time.monotonic() + faults.slow.get(what, 0.0)
                while what in faults.slow and time.monotonic() < deadline:
                    if request.transport is None or request.transport.is_closing():
                        raise web.HTTPServiceUnavailable  # its client died: never handled
                    await asyncio.sleep(0.02)
        if "/manifests/" in request.path:
            counts[f"{request.method} {request.match_info.get('reference', '')}"] += 1
        digest = request.match_info.get("digest", "")
        is_blob = "/blobs/" in request.path and "/uploads" not in request.path
        if request.method == "HEAD" and is_blob:
            counts[f"HEAD {digest}"] += 1
        if request.method == "GET" and is_blob and SEED_PARAM in request.query:
            counts[f"SEED {digest}"] += 1
            await asyncio.sleep(faults.web_seed_delay)
            if faults.web_seed_answers is not None:
                if faults.web_seed_answers <= 0:
                    raise web.HTTPServiceUnavailable
                faults.web_seed_answers -= 1
        elif request.method == "GET" and is_blob:
            counts[digest] += 1
            fault = faults.blobs.get(digest)
            if fault is not None:
                return await _faulty(request, handler, fault)
        return await handler(request)

    return middleware


async def _faulty(
    request: web.Request, handler: Handler, fault: tuple[str, int]
) -> web.StreamResponse:
    await handler(request)  # authorization as usual; its answer is replaced
    kind, size = fault
    if kind == "slow":
        original = await handler(request)
        await asyncio.sleep(1.0)
        return original
    response = web.StreamResponse(headers={"Docker-Content-Digest": request.match_info["digest"]})
    response.content_length = size
    await response.prepare(request)
    if kind == "corrupt":
        await response.write(os.urandom(size))
        await response.write_eof()
    else:  # "cut": half the body, then the connection dies
        await response.write(os.urandom(size // 2))
        assert request.transport is not None
        request.transport.abort()
    return response


async def start_origin(config: OriginConfig) -> Upstream:
    counts: Counter[str] = Counter()
    faults = Faults()
    app = create_origin(config)
    app.middlewares.insert(0, _observe(counts, faults))
    server = TestServer(app)
    await server.start_server(access_log_class=AccessLogger)
    return Upstream(server, config.data_dir, counts, faults)


async def start_edge(
    origin: Upstream, data_dir: Path, port: int = 0, **settings: Any
) -> TestServer:
    config = dataclasses.replace(
        EdgeConfig(origin=origin.url, data_dir=data_dir, listen=f"127.0.0.1:{port}"), **settings
    )
    server = TestServer(create_edge(config), port=port or None)
    await server.start_server(access_log_class=AccessLogger)
    return server


async def settled(server: TestServer) -> None:
    """Until the edge has no fill running: a client's download ends once the bytes are
    verified; the edge then syncs and commits them."""
    assert server.app is not None
    await server.app[BLOBS].fills.settled()


async def start_region(
    upstream: Upstream, tmp_path: Path, count: int, **settings: Any
) -> list[TestServer]:
    """``count`` edges of region "eu" (node ids edge-0 ...), each a static peer of the others."""
    ports = [free_port() for _ in range(count)]
    peers = tuple(
        StaticPeer(f"edge-{i}", "edge", f"http://127.0.0.1:{port}", region="eu")
        for i, port in enumerate(ports)
    )
    return [
        await start_edge(
            upstream,
            tmp_path / f"edge-{i}",
            port,
            node_id=f"edge-{i}",
            region="eu",
            peers=peers,
            advertise_url=f"http://127.0.0.1:{port}",
            **settings,
        )
        for i, port in enumerate(ports)
    ]


def home_of(ids: list[str], digest: str) -> str:
    """Which of the edges ``ids`` (one region) is the digest's home."""
    peers = [StaticPeer(i, "edge", f"http://{i}", region="eu").peer() for i in ids]
    home = home_edge(peers[0], digest, peers)
    assert home is not None
    return home.id


async def push(upstream: Upstream, data: bytes) -> str:
    """Push a blob to team/app at the origin, as the admin."""
    async with aiohttp.ClientSession(
        base_url=upstream.url, middlewares=(registry_auth("admin", upstream.password),)
    ) as origin:
        return await push_blob(origin, "team/app", data)


async def pull(edge: TestServer, upstream: Upstream, digest: str) -> str:
    """What a client pulling ``digest`` of team/app through ``edge`` received, as a digest."""
    async with (
        aiohttp.ClientSession(
            base_url=str(edge.make_url("")),
            middlewares=(registry_auth("admin", upstream.password),),
        ) as client,
        client.get(f"/v2/team/app/blobs/{digest}") as r,
    ):
        assert r.status == 200, await r.text()
        hasher = hashlib.sha256()
        async for chunk in r.content.iter_chunked(1 << 20):
            hasher.update(chunk)
        return "sha256:" + hasher.hexdigest()
