"""What the tests share: building images in memory, pushing them, snapshotting the store."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import re
import socket
import sqlite3
import tarfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientRequest, ClientResponse, ClientSession, encode_basic_auth
from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

Client = TestClient[Any, Any]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


@dataclass(frozen=True)
class Image:
    config: bytes
    layers: tuple[bytes, ...]
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> tuple[bytes, ...]:
        return (self.config, *self.layers)


def make_image(seed: str, layers: int = 2, extra: dict[str, Any] | None = None) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    blobs = tuple(os.urandom(1024 + i) + seed.encode() for i in range(layers))
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, b) for b in blobs],
        **(extra or {}),
    }
    return Image(config, blobs, json.dumps(doc).encode())


def index_of(*images: Image) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, i.manifest) for i in images],
        }
    ).encode()


async def push_blob(client: Client | ClientSession, name: str, data: bytes) -> str:
    digest = sha256(data)
    body = io.BytesIO(data) if len(data) > 1 << 20 else data  # aiohttp: large bytes block
    async with client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=body) as r:
        assert r.status == 201, await r.text()
    return digest


async def push_manifest(
    client: Client | ClientSession,
    name: str,
    reference: str,
    body: bytes,
    media_type: str = OCI_MANIFEST,
) -> ClientResponse:
    async with client.put(
        f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": media_type}
    ) as r:
        assert r.status == 201, await r.text()
        return r


async def push_image(client: Client | ClientSession, name: str, tag: str, image: Image) -> None:
    for blob in image.blobs:
        await push_blob(client, name, blob)
    await push_manifest(client, name, tag, image.manifest)


async def error_code(response: ClientResponse) -> str:
    body = await response.json(content_type=None)
    codes = [e["code"] for e in body["errors"]]
    assert len(codes) == 1, body
    return str(codes[0])


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What differs between two snapshots, by file and by table (empty: nothing)."""
    found: dict[str, Any] = {}
    for kind in ("files", "tables"):
        for name in sorted(set(before[kind]) | set(after[kind])):
            if before[kind].get(name) != after[kind].get(name):
                found[f"{kind}:{name}"] = (before[kind].get(name), after[kind].get(name))
    return found


def snapshot(data_dir: Path) -> dict[str, Any]:
    """Everything the origin has stored: files with their sizes, and every table's rows but
    the records of attempts, which a refused request is meant to leave: the audit trail
    (written in the background, tested on its own) and the throttle's failed sign-ins."""
    files = {
        str(p.relative_to(data_dir)): p.stat().st_size
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and not p.name.startswith("metadata.db")
    }
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with sqlite3.connect(data_dir / "metadata.db") as db:
        names = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        names = [name for name in names if name not in ("audit_events", "login_failures")]
        for table in names:
            tables[table] = sorted(db.execute(f"select * from {table}"), key=repr)
    return {"files": files, "tables": tables}


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def code(self) -> str:
        return str(json.loads(self.body)["errors"][0]["code"])


async def raw_request(port: int, request: bytes, close_after: bool = False) -> RawResponse:
    """Send bytes exactly as given (no client normalises them) and read one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        if close_after:
            writer.write_eof()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        return RawResponse(status, headers, body)
    finally:
        writer.close()


def _tar_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzipped tar of ``files``, and the digest of the uncompressed tar (its diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0), sha256(raw.getvalue())


def write_oci_layout(folder: Path, tag: str, layer_files: list[dict[str, bytes]]) -> str:
    """An OCI image layout holding one image tagged ``tag``; returns its manifest digest."""
    blobs_dir = folder / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs_dir / digest.removeprefix("sha256:")).write_bytes(data)
        return digest

    layers, diff_ids = [], []
    for files in layer_files:
        blob, diff_id = _tar_layer(files)
        put(blob)
        layers.append(descriptor(OCI_LAYER, blob))
        diff_ids.append(diff_id)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    put(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": layers,
        }
    ).encode()
    digest = put(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **descriptor(OCI_MANIFEST, manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return digest


_REPOSITORY = re.compile(r"^/v2/(.+)/(?:blobs|manifests|tags|referrers)(?:/|$)")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def registry_auth(username: str, password: Callable[[], str]) -> ClientMiddlewareType:
    """Docker token auth as registry clients do it, for aiohttp sessions.

    A Bearer challenge is answered with a token from the realm it names (asking for pull, push
    and delete on the repository at once), and that token is sent with every later request for
    the same repository, so requests with streamed bodies rarely need a retry.
    """
    tokens: dict[str, str] = {}

    def key(url: URL) -> str:
        match = _REPOSITORY.match(url.path)
        return match[1] if match else url.path

    async def middleware(req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        repo = key(req.url)
        if repo in tokens:
            req.headers["Authorization"] = f"Bearer {tokens[repo]}"
        response = await handler(req)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status != 401 or not challenge.startswith("Bearer "):
            return response
        params = dict(_CHALLENGE.findall(challenge))
        query = {"service": params["service"]}
        if "scope" in params:
            scope = params["scope"]
            query["scope"] = (
                scope.rsplit(":", 1)[0] + ":pull,push,delete"
                if scope.startswith("repository:")
                else scope
            )
        async with req.session.get(
            params["realm"],
            params=query,
            headers={"Authorization": encode_basic_auth(username, password())},
            middlewares=(),
        ) as r:
            if r.status != 200:
                return response
            tokens[repo] = str((await r.json())["token"])
        response.release()
        req.headers["Authorization"] = f"Bearer {tokens[repo]}"
        return await handler(req)

    return middleware


API = "/api/v1"


def basic_admin(data_dir: Path) -> dict[str, str]:
    """The ``admin`` account's Basic credentials, for the admin API (``/api/v1``)."""
    password = (data_dir / "admin-password").read_text().strip()
    return {"Authorization": encode_basic_auth("admin", password)}


async def api_call(
    client: Client, method: str, path: str, auth: dict[str, str], body: Any = None,
    expect: int = 200,
) -> Any:  # fmt: skip
    """An admin API request that must answer ``expect``; its JSON (or text)."""
    async with client.request(method, API + path, json=body, headers=auth, middlewares=()) as r:
        text = await r.text()
        assert r.status == expect, f"{method} {path}: {r.status} {text}"
        return json.loads(text) if text and r.content_type == "application/json" else text


def admin_auth(data_dir: Path) -> ClientMiddlewareType:
    """Token auth as the admin the origin created on its first start."""
    return registry_auth("admin", lambda: (data_dir / "admin-password").read_text().strip())


async def token_for(client: Client | ClientSession, data_dir: Path, *scopes: str) -> str:
    """A bearer token for the admin with exactly ``scopes``."""
    password = (data_dir / "admin-password").read_text().strip()
    async with client.get(
        "/auth/token",
        params=[("service", "wharf"), *(("scope", s) for s in scopes)],
        headers={"Authorization": encode_basic_auth("admin", password)},
        middlewares=(),
    ) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["token"])


def free_port() -> int:
    """A loopback port free right now (for servers whose URL must be known before they start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus exposition, by name and labels."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"no sample {name}{labels}")


async def until(
    check: Callable[[], bool | Awaitable[bool]], seconds: float = 20.0, interval: float = 0.05
) -> None:
    """Wait until ``check`` holds (polling: what it watches has no event to wait on)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(interval)
