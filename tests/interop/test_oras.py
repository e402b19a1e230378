"""The oras Python SDK, a client we did not write: artifacts, subject, referrers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import types
import urllib.parse
from pathlib import Path

import aiohttp
import oras.client
import oras.decorator
import oras.oci
import pytest

from tests.process import OriginProcess
from tests.support import token_for

pytestmark = pytest.mark.interop
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIGNATURE = "application/vnd.wharf.signature.v1"


@pytest.fixture(autouse=True)
def quick_failures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The SDK retries failures for ~131 s: a failure here should fail, not hang.
    monkeypatch.setattr(oras.decorator, "time", types.SimpleNamespace(sleep=lambda s: None))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.docker/config.json of the host


def push_and_discover(host: str, work: Path, token: str) -> None:
    repo = f"{host}/demo/app"
    client = oras.client.OrasClient(hostname=host, insecure=True)
    # oras-py keeps one token per client and answers a 401 by resending it, so a token asked
    # for one scope (pull, at the first HEAD) never grows to push: hand it the whole scope.
    client.auth.set_token_auth(token)
    (work / "hello.txt").write_text("hello wharf\n")
    resp = client.push(
        target=f"{repo}:v1",
        files=[f"{work / 'hello.txt'}:application/vnd.wharf.demo.layer.v1+txt"],
        manifest_config=":application/vnd.wharf.demo.config.v1+json",
        disable_path_validation=True,
    )
    assert resp.status_code == 201, resp.text
    subject_digest = resp.headers["Docker-Content-Digest"]
    body = resp.request.body
    assert isinstance(body, bytes)
    assert subject_digest == "sha256:" + hashlib.sha256(body).hexdigest()
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject_digest, size=len(body))

    # A referrer through the SDK's own push(subject=...): its config type stands in for
    # the artifact type.
    (work / "sig.txt").write_text("signature-bytes\n")
    resp = client.push(
        target=f"{repo}:sig",
        files=[f"{work / 'sig.txt'}:application/vnd.wharf.sig.v1"],
        manifest_config=":application/vnd.wharf.signature.v1+json",
        subject=subject,
        disable_path_validation=True,
    )
    assert resp.status_code == 201, resp.text
    sig_digest = resp.headers["Docker-Content-Digest"]
    assert resp.headers["OCI-Subject"] == subject_digest

    # A referrer with a real artifactType, pushed by digest with the SDK's building blocks.
    container = client.get_container(repo)
    layer = oras.oci.NewLayer(str(work / "sig.txt"), media_type="application/vnd.wharf.sig.v1")
    client._check_200_response(client.upload_blob(str(work / "sig.txt"), container, layer))
    config, _ = oras.oci.ManifestConfig(media_type=OCI_EMPTY)
    (work / "empty.json").write_bytes(b"{}")
    client._check_200_response(client.upload_blob(str(work / "empty.json"), container, config))
    manifest = oras.oci.NewManifest()
    del manifest["annotations"]
    manifest.update(
        artifactType=SIGNATURE,
        config=config,
        layers=[layer],
        subject={"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(body)},
    )
    art_digest = "sha256:" + hashlib.sha256(json.dumps(manifest).encode()).hexdigest()
    resp = client.upload_manifest(manifest, client.get_container(f"{repo}@{art_digest}"))
    assert resp.status_code == 201, resp.text

    # The referrers API (the SDK has no call for it; its session does the request).
    url = f"http://{host}/v2/demo/app/referrers/{subject_digest}"
    resp = client.do_request(url, "GET", headers={"Accept": OCI_INDEX})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    found = {d["digest"]: d["artifactType"] for d in resp.json()["manifests"]}
    assert found == {
        sig_digest: "application/vnd.wharf.signature.v1+json",
        art_digest: SIGNATURE,
    }
    query = urllib.parse.urlencode({"artifactType": SIGNATURE})
    resp = client.do_request(f"{url}?{query}", "GET", headers={"Accept": OCI_INDEX})
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in resp.json()["manifests"]] == [art_digest]

    files = client.pull(target=f"{repo}:v1", outdir=str(work / "out"))
    assert Path(files[0]).read_text() == "hello wharf\n"
    files = client.pull(target=f"{repo}@{art_digest}", outdir=str(work / "out2"))
    assert Path(files[0]).read_text() == "signature-bytes\n"


async def test_oras_pushes_referrers_and_finds_them(
    origin_process: OriginProcess, tmp_path: Path
) -> None:
    host = origin_process.url.removeprefix("http://")
    async with aiohttp.ClientSession(base_url=origin_process.url) as http:
        token = await token_for(http, origin_process.data_dir, "repository:demo/app:pull,push")
    await asyncio.to_thread(push_and_discover, host, tmp_path, token)
