"""skopeo pushes an image to an edge: it is pullable from that edge at once, and soon from
the origin, byte for byte."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from tests.edges import Upstream
from tests.interop.clients import attempt, layers, skopeo_copy
from tests.interop.test_edge_clients import host_of, layer_digests
from tests.support import write_oci_layout

pytestmark = pytest.mark.interop


async def test_skopeo_pushes_to_the_edge_and_the_image_reaches_the_origin(
    replicating: Upstream, pushing_edge: TestServer, tmp_path: Path
) -> None:
    creds = f"admin:{replicating.password()}"
    layout = tmp_path / "in"
    digest = write_oci_layout(layout, "v1", layers())
    await skopeo_copy(f"oci:{layout}:v1", f"docker://{host_of(pushing_edge)}/team/app:v1", creds)

    # From the edge, at once.
    await skopeo_copy(
        f"docker://{host_of(pushing_edge)}/team/app:v1", f"oci:{tmp_path / 'edge'}:v1", creds
    )
    # From the origin, once replicated.
    deadline = time.monotonic() + 30
    while True:
        code, said = await attempt(
            "skopeo",
            "copy",
            "--insecure-policy",
            "--src-tls-verify=false",
            "--src-creds",
            creds,
            f"docker://{host_of(replicating)}/team/app:v1",
            f"oci:{tmp_path / 'origin'}:v1",
        )
        if code == 0:
            break
        assert time.monotonic() < deadline, said
        await asyncio.sleep(0.2)

    for copy in ("edge", "origin"):
        index = json.loads((tmp_path / copy / "index.json").read_text())
        assert index["manifests"][0]["digest"] == digest
        for blob in [digest, *layer_digests(layout)]:
            name = blob.split(":")[1]
            copied = tmp_path / copy / "blobs" / "sha256" / name
            assert copied.read_bytes() == (layout / "blobs" / "sha256" / name).read_bytes()
