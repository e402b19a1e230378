"""Manifests, tags, listings and referrers over HTTP."""

from __future__ import annotations

import hashlib
import json

from tests.support import (
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    descriptor,
    error_code,
    index_of,
    make_image,
    push_blob,
    push_image,
    push_manifest,
    sha256,
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


async def test_push_and_pull_by_tag_and_digest(origin: Client) -> None:
    image = make_image("a")
    await push_image(origin, "team/app", "v1", image)
    for reference in ("v1", image.digest):
        async with origin.get(f"/v2/team/app/manifests/{reference}") as r:
            assert r.status == 200
            assert await r.read() == image.manifest
            assert r.headers["Content-Type"] == OCI_MANIFEST
            assert r.headers["Docker-Content-Digest"] == image.digest
        async with origin.head(f"/v2/team/app/manifests/{reference}") as r:
            assert r.status == 200
            assert int(r.headers["Content-Length"]) == len(image.manifest)
            assert r.headers["Docker-Content-Digest"] == image.digest


async def test_conditional_get_by_etag(origin: Client) -> None:
    image = make_image("etag")
    await push_image(origin, "r", "v1", image)
    headers = {"If-None-Match": f'"{image.digest}"'}
    async with origin.get("/v2/r/manifests/v1", headers=headers) as r:
        assert r.status == 304


async def test_put_response_names_the_digest(origin: Client) -> None:
    image = make_image("b")
    for blob in image.blobs:
        await push_blob(origin, "r", blob)
    r = await push_manifest(origin, "r", "latest", image.manifest)
    assert r.headers["Docker-Content-Digest"] == image.digest
    assert r.headers["Location"] == f"/v2/r/manifests/{image.digest}"


async def test_push_by_digest_and_sha512(origin: Client) -> None:
    image = make_image("c")
    for blob in image.blobs:
        await push_blob(origin, "r", blob)
    await push_manifest(origin, "r", image.digest, image.manifest)
    sha512 = "sha512:" + hashlib.sha512(image.manifest).hexdigest()
    r = await push_manifest(origin, "r", sha512, image.manifest)
    assert r.headers["Docker-Content-Digest"] == sha512
    async with origin.get(f"/v2/r/manifests/{sha512}") as r:
        assert await r.read() == image.manifest


async def test_index_requires_its_children(origin: Client) -> None:
    amd, arm = make_image("amd"), make_image("arm")
    await push_image(origin, "multi", "amd", amd)
    index = index_of(amd, arm)
    async with origin.put(
        "/v2/multi/manifests/all", data=index, headers={"Content-Type": OCI_INDEX}
    ) as r:
        assert r.status == 400
        body = await r.json()
        assert body["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert body["errors"][0]["detail"] == {"manifests": [arm.digest]}
    await push_image(origin, "multi", "arm", arm)
    await push_manifest(origin, "multi", "all", index, OCI_INDEX)
    async with origin.get("/v2/multi/manifests/all") as r:
        assert r.headers["Content-Type"] == OCI_INDEX


async def test_docker_schema2_manifest_and_list(origin: Client) -> None:
    config, layer = b'{"os":"linux"}', b"docker layer"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor("application/vnd.docker.container.image.v1+json", config),
            "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)],
        }
    ).encode()
    await push_blob(origin, "d", config)
    await push_blob(origin, "d", layer)
    await push_manifest(origin, "d", "v2", manifest, DOCKER_MANIFEST)
    manifest_list = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    **descriptor(DOCKER_MANIFEST, manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    await push_manifest(origin, "d", "list", manifest_list, DOCKER_LIST)
    async with origin.get("/v2/d/manifests/v2") as r:
        assert r.headers["Content-Type"] == DOCKER_MANIFEST
    async with origin.get("/v2/d/manifests/list") as r:
        assert r.headers["Content-Type"] == DOCKER_LIST
        assert await r.read() == manifest_list


async def test_non_distributable_layers_need_not_be_pushed(origin: Client) -> None:
    config = b'{"os":"windows"}'
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": sha256(b"never pushed"),
        "size": 12,
        "urls": ["https://example.invalid/layer"],
    }
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor("application/vnd.docker.container.image.v1+json", config),
            "layers": [foreign],
        }
    ).encode()
    await push_blob(origin, "win", config)
    await push_manifest(origin, "win", "ltsc", manifest, DOCKER_MANIFEST)


async def test_missing_blob_is_named(origin: Client) -> None:
    image = make_image("d")
    await push_blob(origin, "r", image.config)
    async with origin.put(
        "/v2/r/manifests/v1", data=image.manifest, headers={"Content-Type": OCI_MANIFEST}
    ) as r:
        assert r.status == 400
        body = await r.json()
        assert body["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
        assert set(body["errors"][0]["detail"]["blobs"]) == {sha256(x) for x in image.layers}


async def test_delete_tag_keeps_the_manifest(origin: Client) -> None:
    image = make_image("e")
    await push_image(origin, "r", "v1", image)
    await push_manifest(origin, "r", "v2", image.manifest)
    for reference in ("v1", "v2", image.digest):  # now cached
        async with origin.get(f"/v2/r/manifests/{reference}") as r:
            assert r.status == 200
    async with origin.delete("/v2/r/manifests/v1") as r:
        assert r.status == 202
    async with origin.get("/v2/r/manifests/v1") as r:
        assert r.status == 404
        assert await error_code(r) == "MANIFEST_UNKNOWN"
    async with origin.get(f"/v2/r/manifests/{image.digest}") as r:
        assert r.status == 200
    async with origin.get("/v2/r/manifests/v2") as r:
        assert r.status == 200


async def test_delete_by_digest_removes_its_tags(origin: Client) -> None:
    image = make_image("f")
    await push_image(origin, "r", "v1", image)
    for reference in ("v1", image.digest):  # now cached
        async with origin.get(f"/v2/r/manifests/{reference}") as r:
            assert r.status == 200
    async with origin.delete(f"/v2/r/manifests/{image.digest}") as r:
        assert r.status == 202
    for reference in ("v1", image.digest):
        async with origin.get(f"/v2/r/manifests/{reference}") as r:
            assert r.status == 404
    async with origin.get("/v2/r/tags/list") as r:
        assert (await r.json())["tags"] == []


async def test_retagging_moves_the_tag(origin: Client) -> None:
    one, two = make_image("one"), make_image("two")
    await push_image(origin, "r", "latest", one)
    async with origin.get("/v2/r/manifests/latest") as r:
        assert r.headers["Docker-Content-Digest"] == one.digest
    await push_image(origin, "r", "latest", two)
    async with origin.get("/v2/r/manifests/latest") as r:
        assert r.headers["Docker-Content-Digest"] == two.digest


async def test_tag_list_pages_with_link_headers(origin: Client) -> None:
    image = make_image("g")
    await push_image(origin, "paged", "t0", image)
    for i in range(1, 5):
        await push_manifest(origin, "paged", f"t{i}", image.manifest)
    async with origin.get("/v2/paged/tags/list") as r:
        assert await r.json() == {"name": "paged", "tags": ["t0", "t1", "t2", "t3", "t4"]}
    async with origin.get("/v2/paged/tags/list?n=2") as r:
        assert (await r.json())["tags"] == ["t0", "t1"]
        assert r.headers["Link"] == '</v2/paged/tags/list?n=2&last=t1>; rel="next"'
    async with origin.get("/v2/paged/tags/list?n=2&last=t3") as r:
        assert (await r.json())["tags"] == ["t4"]
        assert "Link" not in r.headers
    async with origin.get("/v2/paged/tags/list?n=0") as r:
        assert (await r.json())["tags"] == []
    async with origin.get("/v2/nothing/tags/list") as r:
        assert r.status == 404
        assert await error_code(r) == "NAME_UNKNOWN"


async def test_catalog_pages(origin: Client) -> None:
    for name in ("c/a", "c/b", "c/c"):
        await push_blob(origin, name, name.encode())
    async with origin.get("/v2/_catalog") as r:
        assert (await r.json())["repositories"] == ["c/a", "c/b", "c/c"]
    async with origin.get("/v2/_catalog?n=2") as r:
        assert (await r.json())["repositories"] == ["c/a", "c/b"]
        assert r.headers["Link"] == '</v2/_catalog?n=2&last=c/b>; rel="next"'
    async with origin.get("/v2/_catalog?n=2&last=c/b") as r:
        assert (await r.json())["repositories"] == ["c/c"]


async def test_subject_and_referrers(origin: Client) -> None:
    image = make_image("subject")
    await push_image(origin, "r", "v1", image)
    subject = descriptor(OCI_MANIFEST, image.manifest)
    empty = b"{}"
    await push_blob(origin, "r", empty)
    referrers = []
    for i, artifact_type in enumerate(
        (
            "application/vnd.example.sbom",
            "application/vnd.example.sig",
            "application/vnd.example.sbom",
        )
    ):
        blob = f"artifact {i}".encode()
        await push_blob(origin, "r", blob)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": descriptor("application/vnd.oci.empty.v1+json", empty),
                "layers": [descriptor("text/plain", blob)],
                "subject": subject,
                "annotations": {"n": str(i)},
            }
        ).encode()
        r = await push_manifest(origin, "r", sha256(body), body)
        assert r.headers["OCI-Subject"] == image.digest
        referrers.append((sha256(body), artifact_type, len(body)))

    async with origin.get(f"/v2/r/referrers/{image.digest}") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == OCI_INDEX
        assert "OCI-Filters-Applied" not in r.headers
        index = await r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    assert [(m["digest"], m["artifactType"], m["size"]) for m in index["manifests"]] == referrers
    assert index["manifests"][0]["annotations"] == {"n": "0"}

    query = "artifactType=application/vnd.example.sbom"
    async with origin.get(f"/v2/r/referrers/{image.digest}?{query}") as r:
        assert r.headers["OCI-Filters-Applied"] == "artifactType"
        found = [m["digest"] for m in (await r.json())["manifests"]]
    assert found == [referrers[0][0], referrers[2][0]]

    async with origin.get(f"/v2/r/referrers/{sha256(b'nothing refers')}") as r:
        assert r.status == 200
        assert (await r.json())["manifests"] == []


async def test_referrers_pushed_before_their_subject(origin: Client) -> None:
    empty = b"{}"
    await push_blob(origin, "r", empty)
    missing_subject = {"mediaType": OCI_MANIFEST, "digest": sha256(b"later"), "size": 5}
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": descriptor("application/vnd.oci.empty.v1+json", empty),
            "layers": [],
            "subject": missing_subject,
        }
    ).encode()
    await push_manifest(origin, "r", sha256(body), body)
    async with origin.get(f"/v2/r/referrers/{sha256(b'later')}") as r:
        assert [m["digest"] for m in (await r.json())["manifests"]] == [sha256(body)]
