"""Clients and registries we did not write: skopeo, podman and CNCF Distribution."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.interop.clients import (
    attempt,
    creds,
    layers,
    layout_digest,
    podman,
    run,
    skopeo_copy,
    skopeo_inspect,
)
from tests.process import OriginProcess
from tests.support import admin_auth, write_oci_layout

pytestmark = pytest.mark.interop


async def test_skopeo_copies_a_multi_layer_image_in_and_out(
    origin_process: OriginProcess, tmp_path: Path
) -> None:
    host = origin_process.url.removeprefix("http://")
    digest = write_oci_layout(tmp_path / "in", "v1", layers())
    await skopeo_copy(
        f"oci:{tmp_path / 'in'}:v1", f"docker://{host}/team/app:v1", creds(origin_process)
    )
    await skopeo_copy(
        f"docker://{host}/team/app:v1", f"oci:{tmp_path / 'out'}:v1", creds(origin_process)
    )
    assert layout_digest(tmp_path / "out") == digest
    for blob in (tmp_path / "in" / "blobs" / "sha256").iterdir():
        assert (tmp_path / "out" / "blobs" / "sha256" / blob.name).read_bytes() == blob.read_bytes()
    inspected = await skopeo_inspect(f"docker://{host}/team/app:v1", creds(origin_process))
    assert inspected["Digest"] == digest
    assert len(inspected["Layers"]) == 3


async def test_podman_pulls_and_pushes(
    origin_process: OriginProcess, podman_storage: Path, tmp_path: Path
) -> None:
    host = origin_process.url.removeprefix("http://")
    digest = write_oci_layout(tmp_path / "in", "v1", layers())
    await skopeo_copy(
        f"oci:{tmp_path / 'in'}:v1", f"docker://{host}/team/app:v1", creds(origin_process)
    )
    storage = podman_storage
    login = ("--tls-verify=false", "--creds", creds(origin_process))
    await run(*podman(storage, "pull", *login, f"{host}/team/app:v1"))
    pulled = await run(
        *podman(storage, "image", "inspect", "--format", "{{.Digest}}", f"{host}/team/app:v1")
    )
    assert pulled.strip() == digest
    await run(*podman(storage, "tag", f"{host}/team/app:v1", f"{host}/team/copy:v2"))
    await run(*podman(storage, "push", *login, f"{host}/team/copy:v2"))
    async with (
        aiohttp.ClientSession(
            base_url=origin_process.url, middlewares=(admin_auth(origin_process.data_dir),)
        ) as http,
        http.get("/v2/team/copy/tags/list") as r,
    ):
        assert (await r.json())["tags"] == ["v2"]
    config = await skopeo_inspect(
        f"docker://{host}/team/copy:v2", creds(origin_process), "--config"
    )
    assert len(config["rootfs"]["diff_ids"]) == 3


async def test_images_move_between_wharf_and_distribution_unchanged(
    origin_process: OriginProcess, distribution: str, tmp_path: Path
) -> None:
    host = origin_process.url.removeprefix("http://")
    digest = write_oci_layout(tmp_path / "in", "v1", layers())
    await skopeo_copy(
        f"oci:{tmp_path / 'in'}:v1", f"docker://{distribution}/peer/app:v1", creds(origin_process)
    )
    await skopeo_copy(
        f"docker://{distribution}/peer/app:v1",
        f"docker://{host}/peer/app:v1",
        creds(origin_process),
    )
    await skopeo_copy(
        f"docker://{host}/peer/app:v1",
        f"docker://{distribution}/peer/back:v1",
        creds(origin_process),
    )
    for registry, name in ((host, "peer/app"), (distribution, "peer/back")):
        inspected = await skopeo_inspect(f"docker://{registry}/{name}:v1", creds(origin_process))
        assert inspected["Digest"] == digest


async def refused_push(origin: OriginProcess, source: str, reference: str) -> str:
    """What skopeo prints when the origin refuses its push of ``source`` to ``reference``."""
    host = origin.url.removeprefix("http://")
    code, out = await attempt(
        "skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
        "--dest-creds", creds(origin), source, f"docker://{host}/{reference}",
    )  # fmt: skip
    assert code != 0
    return out


async def test_skopeo_shows_why_an_immutable_tag_refused_its_push(
    origin_process: OriginProcess, tmp_path: Path
) -> None:
    host = origin_process.url.removeprefix("http://")
    admin = {"Authorization": aiohttp.encode_basic_auth(*creds(origin_process).split(":", 1))}
    async with aiohttp.ClientSession(base_url=origin_process.url, headers=admin) as http:
        async with http.post("/api/v1/organizations", json={"name": "team"}) as r:
            assert r.status == 201, await r.text()
        rule = {"pattern": "v*"}
        async with http.post("/api/v1/namespaces/team/immutable-tags", json=rule) as r:
            assert r.status == 201, await r.text()
    write_oci_layout(tmp_path / "first", "v1", layers())
    write_oci_layout(tmp_path / "second", "v1", layers())
    await skopeo_copy(
        f"oci:{tmp_path / 'first'}:v1", f"docker://{host}/team/app:v1", creds(origin_process)
    )
    out = await refused_push(origin_process, f"oci:{tmp_path / 'second'}:v1", "team/app:v1")
    assert "tag v1 is immutable (rule v*)" in out


async def test_skopeo_shows_why_a_quota_refused_its_push(
    origin_process: OriginProcess, tmp_path: Path
) -> None:
    admin = {"Authorization": aiohttp.encode_basic_auth(*creds(origin_process).split(":", 1))}
    async with aiohttp.ClientSession(base_url=origin_process.url, headers=admin) as http:
        async with http.post("/api/v1/organizations", json={"name": "small"}) as r:
            assert r.status == 201, await r.text()
        quota = {"quota_bytes": 1 << 20}  # the image's first layer alone is 2 MiB
        async with http.put("/api/v1/namespaces/small/quota", json=quota) as r:
            assert r.status == 200, await r.text()
    write_oci_layout(tmp_path / "big", "v1", layers())
    out = await refused_push(origin_process, f"oci:{tmp_path / 'big'}:v1", "small/app:v1")
    assert "namespace small is over its quota" in out
