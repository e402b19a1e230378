"""The README's main command, ``wharf up``: an origin and two edges on embedded defaults. An
image pushed to an edge is pullable there at once and reaches the origin, and the edges pull
through to the origin: the whole job, end to end, as a new user would run it."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp

from tests.process import OriginProcess, wait_ready
from tests.support import make_image, push_image, registry_auth, sha256


def three_free_ports() -> int:
    """A port P with P, P+1 and P+2 free now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 2 >= 65536:
            continue
        try:
            for offset in (1, 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError("no three free ports in a row")


class Cluster(OriginProcess):
    component = "wharf up"

    def __init__(self, root: Path, port: int) -> None:
        super().__init__(root / "origin", root / "up.log")
        self.root = root
        self.port = port

    def arguments(self) -> list[str]:
        return ["up", "--data-dir", str(self.root), "--port", str(self.port)]


async def test_wharf_up_pushes_at_an_edge_reach_the_origin_and_the_other_edge(
    tmp_path: Path,
) -> None:
    port = three_free_ports()
    cluster = Cluster(tmp_path / "var", port)
    await cluster.start()
    try:
        edge_a, edge_b = f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port + 2}"
        await wait_ready(edge_a)
        await wait_ready(edge_b)
        password = (tmp_path / "var" / "origin" / "admin-password").read_text().strip()
        auth = (registry_auth("admin", lambda: password),)
        image = make_image("wharf-up", layers=2)
        async with aiohttp.ClientSession(base_url=edge_a, middlewares=auth) as http:
            await push_image(http, "admin/app", "v1", image)
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession(base_url=cluster.url, middlewares=auth) as http:
            while True:
                async with http.head("/v2/admin/app/manifests/v1") as r:
                    if r.headers.get("Docker-Content-Digest") == image.digest:
                        break
                assert time.monotonic() < deadline, "the push never reached the origin"
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession(base_url=edge_b, middlewares=auth) as http:
            async with http.get("/v2/admin/app/manifests/v1") as r:
                assert r.status == 200
                assert await r.read() == image.manifest
            for blob in image.blobs:
                async with http.get(f"/v2/admin/app/blobs/{sha256(blob)}") as r:
                    assert await r.read() == blob
    finally:
        await cluster.stop_quietly()
