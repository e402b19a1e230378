"""Blobs and uploads over HTTP, as a client of the Distribution API sees them."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp.pytest_plugin import AiohttpClient

from origin.app import create_app
from origin.config import OriginConfig
from origin.locations import LocationConfig
from tests.storage.moto import MotoServer
from tests.support import Client, admin_auth, error_code, push_blob, sha256, token_for

MiB = 1 << 20


async def test_base_endpoint_announces_the_api_version(origin: Client) -> None:
    async with origin.get("/v2/") as r:
        assert r.status == 200
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_monolithic_push_then_get_and_head(origin: Client) -> None:
    data = os.urandom(100_000)
    digest = await push_blob(origin, "team/app", data)
    async with origin.get(f"/v2/team/app/blobs/{digest}") as r:
        assert r.status == 200
        assert await r.read() == data
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Type"] == "application/octet-stream"
    async with origin.head(f"/v2/team/app/blobs/{digest}") as r:
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == len(data)
        assert await r.read() == b""


async def test_ranges_are_served_partially_and_refused_when_unsatisfiable(origin: Client) -> None:
    data = os.urandom(5000)
    digest = await push_blob(origin, "r", data)
    async with origin.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=10-19"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == "bytes 10-19/5000"
        assert await r.read() == data[10:20]
    async with origin.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=4990-"}) as r:
        assert r.status == 206
        assert await r.read() == data[4990:]
    async with origin.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=-0"}) as r:
        assert r.status == 416  # a suffix of nothing (RFC 9110 14.1.2)
    async with origin.get(f"/v2/r/blobs/{digest}", headers={"Range": "bytes=6000-7000"}) as r:
        assert r.status == 416
        assert r.headers["Content-Range"] == "bytes */5000"


async def test_sha512_digests_are_accepted_and_verified(origin: Client) -> None:
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    async with origin.post(f"/v2/r/blobs/uploads/?digest={digest}", data=data) as r:
        assert r.status == 201
    async with origin.get(f"/v2/r/blobs/{digest}") as r:
        assert await r.read() == data
        assert r.headers["Docker-Content-Digest"] == digest


async def test_blobs_are_visible_only_in_their_repository(origin: Client) -> None:
    digest = await push_blob(origin, "a/one", b"private to one")
    await push_blob(origin, "a/two", b"something else")
    async with origin.get(f"/v2/a/two/blobs/{digest}") as r:
        assert r.status == 404
        assert await error_code(r) == "BLOB_UNKNOWN"
    async with origin.get(f"/v2/a/three/blobs/{digest}") as r:
        assert r.status == 404
        assert await error_code(r) == "NAME_UNKNOWN"


async def test_delete_blob_unlinks_it(origin: Client) -> None:
    digest = await push_blob(origin, "r", b"to delete")
    async with origin.head(f"/v2/r/blobs/{digest}") as r:  # now cached
        assert r.status == 200
    async with origin.delete(f"/v2/r/blobs/{digest}") as r:
        assert r.status == 202
    async with origin.head(f"/v2/r/blobs/{digest}") as r:
        assert r.status == 404
    async with origin.delete(f"/v2/r/blobs/{digest}") as r:
        assert r.status == 404
        assert await error_code(r) == "BLOB_UNKNOWN"


async def test_post_then_put_with_the_whole_body(origin: Client) -> None:
    data = os.urandom(3000)
    async with origin.post("/v2/r/blobs/uploads/") as r:
        assert r.status == 202
        location = r.headers["Location"]
        assert r.headers["Docker-Upload-UUID"] in location
    async with origin.put(f"{location}?digest={sha256(data)}", data=data) as r:
        assert r.status == 201
        assert r.headers["Location"] == f"/v2/r/blobs/{sha256(data)}"
    async with origin.get(f"/v2/r/blobs/{sha256(data)}") as r:
        assert await r.read() == data


async def test_chunked_upload_reports_progress_and_refuses_out_of_order(origin: Client) -> None:
    data = os.urandom(10_000)
    async with origin.post("/v2/r/blobs/uploads/") as r:
        location = r.headers["Location"]
    async with origin.patch(location, data=data[:4000], headers={"Content-Range": "0-3999"}) as r:
        assert r.status == 202
        assert r.headers["Range"] == "0-3999"
        location = r.headers["Location"]
    async with origin.patch(
        location, data=data[6000:], headers={"Content-Range": "6000-9999"}
    ) as r:
        assert r.status == 416
        assert r.headers["Range"] == "0-3999"
    async with origin.get(location) as r:
        assert r.status == 204
        assert r.headers["Range"] == "0-3999"
    async with origin.patch(
        location, data=data[4000:8000], headers={"Content-Range": "4000-7999"}
    ) as r:
        assert r.status == 202
    async with origin.put(
        f"{location}?digest={sha256(data)}",
        data=data[8000:],
        headers={"Content-Range": "8000-9999"},
    ) as r:
        assert r.status == 201
    async with origin.get(f"/v2/r/blobs/{sha256(data)}") as r:
        assert await r.read() == data
    async with origin.get(location) as r:
        assert r.status == 404
        assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_streamed_patch_without_content_range(origin: Client) -> None:
    data = os.urandom(3 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1 << 20):
            yield data[i : i + (1 << 20)]

    async with origin.post("/v2/r/blobs/uploads/") as r:
        location = r.headers["Location"]
    async with origin.patch(location, data=chunks()) as r:
        assert r.status == 202
        assert r.headers["Range"] == f"0-{len(data) - 1}"
    async with origin.put(f"{location}?digest={sha256(data)}") as r:
        assert r.status == 201
    async with origin.get(f"/v2/r/blobs/{sha256(data)}") as r:
        assert await r.read() == data


async def test_cancelled_upload_is_gone(origin: Client) -> None:
    async with origin.post("/v2/r/blobs/uploads/") as r:
        location = r.headers["Location"]
    async with origin.delete(location) as r:
        assert r.status == 204
    async with origin.get(location) as r:
        assert r.status == 404
        assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_cross_repository_mount(origin: Client, origin_config: OriginConfig) -> None:
    digest = await push_blob(origin, "src/app", b"shared layer")
    url = f"/v2/dst/app/blobs/uploads/?mount={digest}&from=src/app"
    push_only = await token_for(origin, origin_config.data_dir, "repository:dst/app:pull,push")
    async with origin.post(url, headers={"Authorization": f"Bearer {push_only}"}) as r:
        assert r.status == 202  # may not read the source: no mount, an upload session instead
    both = await token_for(
        origin, origin_config.data_dir, "repository:dst/app:pull,push", "repository:src/app:pull"
    )
    async with origin.post(url, headers={"Authorization": f"Bearer {both}"}) as r:
        assert r.status == 201
        assert r.headers["Location"] == f"/v2/dst/app/blobs/{digest}"
    async with origin.get(f"/v2/dst/app/blobs/{digest}") as r:
        assert await r.read() == b"shared layer"


async def test_mount_that_cannot_be_done_opens_an_upload_session(origin: Client) -> None:
    digest = await push_blob(origin, "src/app", b"layer")
    for query in (f"mount={digest}&from=other/repo", f"mount={digest}"):
        async with origin.post(f"/v2/dst/app/blobs/uploads/?{query}") as r:
            assert r.status == 202
            assert "/v2/dst/app/blobs/uploads/" in r.headers["Location"]
    async with origin.head(f"/v2/dst/app/blobs/{digest}") as r:
        assert r.status == 404


async def test_wrong_digest_at_the_end_leaves_the_session_to_retry(origin: Client) -> None:
    data = b"abc" * 1000
    async with origin.post("/v2/r/blobs/uploads/") as r:
        location = r.headers["Location"]
    async with origin.patch(location, data=data) as r:
        assert r.status == 202
    async with origin.put(f"{location}?digest={sha256(b'other')}") as r:
        assert r.status == 400
        assert await error_code(r) == "DIGEST_INVALID"
    async with origin.put(f"{location}?digest={sha256(data)}") as r:
        assert r.status == 201


async def test_abandoned_uploads_expire(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    config = OriginConfig(listen="127.0.0.1:0", data_dir=tmp_path / "o", upload_ttl_seconds=1.0)
    client = await aiohttp_client(create_app(config), middlewares=(admin_auth(tmp_path / "o"),))
    async with client.post("/v2/r/blobs/uploads/") as r:
        location = r.headers["Location"]
    async with client.patch(location, data=b"abandoned") as r:
        assert r.status == 202
    orphan = tmp_path / "o" / "uploads" / str(uuid.uuid4())  # a crashed monolithic push
    orphan.write_bytes(b"partial")
    await asyncio.sleep(2.6)
    async with client.get(location) as r:
        assert r.status == 404
        assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert list((tmp_path / "o" / "uploads").iterdir()) == []


async def test_a_client_leaving_mid_download_disturbs_no_one(
    origin: Client, origin_config: OriginConfig
) -> None:
    data = os.urandom(32 << 20)
    async with origin.post(
        f"/v2/r/blobs/uploads/?digest={sha256(data)}", data=io.BytesIO(data)
    ) as r:
        assert r.status == 201
    port = origin.port
    assert port is not None
    token = await token_for(origin, origin_config.data_dir, "repository:r:pull")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v2/r/blobs/{sha256(data)} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    await reader.readexactly(1 << 20)  # headers and the first bytes, then hang up
    writer.close()
    async with origin.get(f"/v2/r/blobs/{sha256(data)}") as r:
        assert await r.read() == data
    async with origin.get(
        f"/v2/r/blobs/{sha256(data)}", headers={"Range": "bytes=1000-2000999"}
    ) as r:
        assert r.status == 206
        assert await r.read() == data[1000:2001000]


async def test_a_large_blob_in_uneven_chunks_comes_back_whole(origin: Client) -> None:
    """Chunks smaller and larger than an S3 part, a whole GET (streamed, not from memory) and
    ranges across the chunks' seams."""
    data = os.urandom(13 * MiB + 7)
    async with origin.post("/v2/r/blobs/uploads/") as r:
        location = r.headers["Location"]
    offset = 0
    for size in (1 * MiB, 7 * MiB, 3, 5 * MiB + 4):
        chunk = data[offset : offset + size]
        headers = {"Content-Range": f"{offset}-{offset + size - 1}"}
        async with origin.patch(location, data=io.BytesIO(chunk), headers=headers) as r:
            assert r.status == 202, await r.text()
            location = r.headers["Location"]
        offset += size
    async with origin.put(location, params={"digest": sha256(data)}) as r:
        assert r.status == 201, await r.text()
    async with origin.get(f"/v2/r/blobs/{sha256(data)}") as r:
        assert r.status == 200
        assert r.content_length == len(data)
        assert await r.read() == data
    for start, end in ((MiB - 2, 8 * MiB + 2), (len(data) - 10, len(data) - 1)):
        headers = {"Range": f"bytes={start}-{end}"}
        async with origin.get(f"/v2/r/blobs/{sha256(data)}", headers=headers) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
            assert await r.read() == data[start : end + 1]


async def test_blob_gets_can_be_sent_to_pre_signed_urls(
    aiohttp_client: AiohttpClient, tmp_path: Path, moto_server: MotoServer
) -> None:
    """With ``presign`` on, a blob GET is a 307 to a pre-signed URL of the bucket, which any
    HTTP client follows without credentials; HEAD and small blobs stay at the origin."""
    bucket = await moto_server.new_bucket()
    location = LocationConfig(**moto_server.location("s3", bucket, presign=True))
    config = OriginConfig(listen="127.0.0.1:0", data_dir=tmp_path / "o", locations=(location,))
    client = await aiohttp_client(create_app(config), middlewares=(admin_auth(tmp_path / "o"),))
    data = os.urandom(MiB)
    digest = await push_blob(client, "r", data)
    async with client.get(f"/v2/r/blobs/{digest}", allow_redirects=False) as r:
        assert r.status == 307
        assert r.headers["Location"].startswith(moto_server.url)
        assert r.headers["Docker-Content-Digest"] == digest
    async with client.get(f"/v2/r/blobs/{digest}") as r:  # followed, credentials dropped
        assert r.status == 200
        assert await r.read() == data
    async with client.head(f"/v2/r/blobs/{digest}") as r:
        assert r.status == 200
        assert r.content_length == len(data)
    small = await push_blob(client, "r", b"config")
    async with client.get(f"/v2/r/blobs/{small}", allow_redirects=False) as r:
        assert r.status == 200
        assert await r.read() == b"config"
