"""Clients and registries we did not write, through an edge: skopeo and podman pull via the
edge (the second time without asking the origin for a blob), and CNCF Distribution serves
as an upstream the edge mirrors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from edge.config import Mirror
from tests.edges import Upstream, start_edge
from tests.interop.clients import attempt, layers, podman, run, skopeo_copy
from tests.support import write_oci_layout

pytestmark = pytest.mark.interop


def host_of(server: TestServer | Upstream) -> str:
    url = server.url if isinstance(server, Upstream) else str(server.make_url(""))
    return url.rstrip("/").removeprefix("http://")


def layer_digests(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


async def test_skopeo_and_podman_pull_through_the_edge(
    upstream: Upstream, tmp_path: Path, podman_storage: Path
) -> None:
    creds = f"admin:{upstream.password()}"
    layout = tmp_path / "in"
    digest = write_oci_layout(layout, "v1", layers())
    await skopeo_copy(f"oci:{layout}:v1", f"docker://{host_of(upstream)}/team/app:v1", creds)
    blobs = layer_digests(layout)
    assert all(upstream.blob_gets[b] == 0 for b in blobs)

    edge = await start_edge(upstream, tmp_path / "edge")
    try:
        via_edge = f"{host_of(edge)}/team/app:v1"
        await skopeo_copy(f"docker://{via_edge}", f"oci:{tmp_path / 'out'}:v1", creds)
        out_index = json.loads((tmp_path / "out" / "index.json").read_text())
        assert out_index["manifests"][0]["digest"] == digest
        assert all(upstream.blob_gets[b] == 1 for b in blobs)

        login = ("--tls-verify=false", "--creds", creds)
        await run(*podman(podman_storage, "pull", *login, via_edge))
        pulled = await run(
            *podman(podman_storage, "image", "inspect", "--format", "{{.Digest}}", via_edge)
        )
        assert pulled.strip() == digest
        assert all(upstream.blob_gets[b] == 1 for b in blobs)  # all from the edge's disk

        # Anonymous podman: the edge sends it to the origin's realm, which grants nothing.
        code, _ = await attempt(
            *podman(podman_storage, "pull", "--tls-verify=false", f"{host_of(edge)}/team/app:v1")
        )
        assert code != 0
    finally:
        await edge.close()


async def test_the_edge_mirrors_a_distribution_registry(
    upstream: Upstream, distribution: str, tmp_path: Path
) -> None:
    layout = tmp_path / "in"
    digest = write_oci_layout(layout, "v1", layers())
    await skopeo_copy(f"oci:{layout}:v1", f"docker://{distribution}/library/tool:v1", "x:y")
    mirror = Mirror(namespace="peer.example", url=f"http://{distribution}")
    edge = await start_edge(upstream, tmp_path / "edge", mirrors=(mirror,))
    try:
        # A public mirror: pulls need no credentials, by name or by containerd's ?ns=.
        code, said = await attempt(
            "skopeo",
            "copy",
            "--insecure-policy",
            "--src-tls-verify=false",
            "--src-no-creds",
            f"docker://{host_of(edge)}/peer.example/library/tool:v1",
            f"oci:{tmp_path / 'out'}:v1",
        )
        assert code == 0, said
        out_index = json.loads((tmp_path / "out" / "index.json").read_text())
        assert out_index["manifests"][0]["digest"] == digest
        for blob in layer_digests(layout):
            name = blob.split(":")[1]
            copied = tmp_path / "out" / "blobs" / "sha256" / name
            assert copied.read_bytes() == (layout / "blobs" / "sha256" / name).read_bytes()
    finally:
        await edge.close()
