"""Bad input gets the error the OCI spec names, with its status, and changes nothing.

Each case runs against a store that already holds an image and an open upload session; the
whole store (files and every table) is compared before and after.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from origin.config import OriginConfig
from tests.support import (
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    RawResponse,
    changes,
    descriptor,
    index_of,
    make_image,
    push_image,
    raw_request,
    sha256,
    snapshot,
    token_for,
)

NAME = "team/app"
IMAGE = make_image("bad-input")
SESSION_BYTES = b"x" * 1000


@dataclass(frozen=True)
class World:
    client: Client
    session: str  # Location of an upload session holding SESSION_BYTES
    token: str  # the admin's, for NAME: raw requests carry it themselves

    async def send_streamed(
        self, method: str, path: str, data: bytes, headers: dict[str, str]
    ) -> RawResponse:
        """A chunked body: no Content-Length to check it against up front."""

        async def body() -> AsyncIterator[bytes]:
            yield data

        async with self.client.request(method, path, data=body(), headers=headers) as r:
            return RawResponse(
                r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()
            )

    def host(self) -> str:
        """Headers every raw request starts with (the token, so errors are not 401s)."""
        return f"Host: x\nAuthorization: Bearer {self.token}\n"

    @property
    def port(self) -> int:
        port = self.client.port
        assert port is not None
        return port

    async def send(
        self, method: str, path: str, data: bytes = b"", headers: dict[str, str] | None = None
    ) -> RawResponse:
        body = io.BytesIO(data) if data else None
        async with self.client.request(method, path, data=body, headers=headers or {}) as r:
            return RawResponse(
                r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()
            )


Case = Callable[[World], Awaitable[RawResponse]]
MiB = 1 << 20


def manifest_put(body: bytes, reference: str = "bad", media_type: str = OCI_MANIFEST) -> Case:
    return lambda w: w.send(
        "PUT", f"/v2/{NAME}/manifests/{reference}", body, {"Content-Type": media_type}
    )


def raw(template: str, body: bytes = b"") -> Case:
    async def case(w: World) -> RawResponse:
        head = template.format(session=w.session, name=NAME).replace("Host: x\n", w.host())
        head = head.replace("\n", "\r\n")
        return await raw_request(w.port, head.encode() + b"\r\n" + body)

    return case


def lying_length(data: bytes, length_header: str) -> Case:
    """The server reads what the headers announce; what follows is another (bad) request."""

    async def case(w: World) -> RawResponse:
        reader, writer = await asyncio.open_connection("127.0.0.1", w.port)
        head = (
            f"POST /v2/{NAME}/blobs/uploads/?digest={sha256(data)} HTTP/1.1\n"
            f"{w.host()}{length_header}\n"
        ).replace("\n", "\r\n")
        announced = int(length_header.split(":")[1]) if length_header else 0
        writer.write(head.encode() + data[:announced])
        first = await reader.read(65536)
        writer.write(data[announced:])
        await writer.drain()
        second = await reader.read(65536)
        writer.close()
        assert second.split()[1] == b"400", second
        status = int(first.split()[1])
        return RawResponse(status, {}, first.split(b"\r\n\r\n", 1)[1])

    return case


def patch(data: bytes, headers: dict[str, str]) -> Case:
    return lambda w: w.send("PATCH", w.session, data, headers)


GOOD = sha256(b"good")
LONG_NAME = "a/" + "b" * 300
dangling = make_image("dangling")
other_child = make_image("never pushed")
CASES: dict[str, tuple[Case, int, str | None]] = {
    "malformed digest": (
        lambda w: w.send("GET", f"/v2/{NAME}/blobs/sha256:xyz"),
        400,
        "DIGEST_INVALID",
    ),
    "unknown algorithm": (
        lambda w: w.send("GET", f"/v2/{NAME}/blobs/md5:{'a' * 32}"),
        400,
        "DIGEST_INVALID",
    ),
    "sha256 digest of the wrong length": (
        lambda w: w.send("HEAD", f"/v2/{NAME}/blobs/sha256:{'a' * 63}"),
        400,
        None,
    ),
    "uppercase in a digest": (
        lambda w: w.send("DELETE", f"/v2/{NAME}/blobs/sha256:{'A' * 64}"),
        400,
        "DIGEST_INVALID",
    ),
    "body does not match its digest": (
        lambda w: w.send("POST", f"/v2/{NAME}/blobs/uploads/?digest={GOOD}", b"evil"),
        400,
        "DIGEST_INVALID",
    ),
    "uppercase name": (
        lambda w: w.send("POST", "/v2/Team/App/blobs/uploads/"),
        400,
        "NAME_INVALID",
    ),
    "name with ..": (
        raw("GET /v2/team/../../etc/manifests/latest HTTP/1.1\nHost: x\n"),
        400,
        "NAME_INVALID",
    ),
    "name with encoded ..": (
        raw(
            "PUT /v2/team/%2e%2e/app/manifests/latest HTTP/1.1\nHost: x\nContent-Length: 2\n", b"{}"
        ),
        400,
        "NAME_INVALID",
    ),
    "over-long name": (
        lambda w: w.send("POST", f"/v2/{LONG_NAME}/blobs/uploads/"),
        400,
        "NAME_INVALID",
    ),
    "mount from an invalid name": (
        lambda w: w.send("POST", f"/v2/{NAME}/blobs/uploads/?mount={GOOD}&from=../x"),
        400,
        "NAME_INVALID",
    ),
    "malformed manifest": (manifest_put(b"{not json"), 400, "MANIFEST_INVALID"),
    "manifest that is not an object": (manifest_put(b"[1, 2]"), 400, "MANIFEST_INVALID"),
    "schema version 1": (
        manifest_put(json.dumps({"schemaVersion": 1, "name": "x"}).encode()),
        400,
        "MANIFEST_INVALID",
    ),
    "oversized manifest": (manifest_put(b" " * (4 * MiB + 1)), 413, "MANIFEST_INVALID"),
    "dangling manifest": (manifest_put(dangling.manifest), 400, "MANIFEST_BLOB_UNKNOWN"),
    "index with an unknown child": (
        manifest_put(index_of(IMAGE, other_child), media_type=OCI_INDEX),
        400,
        "MANIFEST_UNKNOWN",
    ),
    "Content-Type contradicts mediaType": (
        manifest_put(IMAGE.manifest, media_type=OCI_INDEX),
        400,
        "MANIFEST_INVALID",
    ),
    "descriptor with a malformed digest": (
        manifest_put(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "x", "digest": "sha256:nothex", "size": 2},
                    "layers": [],
                }
            ).encode()
        ),
        400,
        "MANIFEST_INVALID",
    ),
    "negative descriptor size": (
        manifest_put(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "config": {**descriptor("x", IMAGE.config), "size": -1},
                    "layers": [],
                }
            ).encode()
        ),
        400,
        "MANIFEST_INVALID",
    ),
    "manifest pushed under another digest": (
        manifest_put(IMAGE.manifest, reference=sha256(b"something else")),
        400,
        "DIGEST_INVALID",
    ),
    "invalid tag": (manifest_put(IMAGE.manifest, reference="-bad"), 400, "MANIFEST_INVALID"),
    "out-of-order chunk": (patch(b"y" * 10, {"Content-Range": "2000-2009"}), 416, "RANGE_INVALID"),
    "malformed Content-Range": (patch(b"y" * 10, {"Content-Range": "10-1"}), 416, "RANGE_INVALID"),
    "Content-Length contradicts Content-Range": (
        patch(b"y" * 10, {"Content-Range": "1000-1019"}),
        400,
        "SIZE_INVALID",
    ),
    "body shorter than its Content-Range": (
        lambda w: w.send_streamed("PATCH", w.session, b"y" * 10, {"Content-Range": "1000-1019"}),
        400,
        "SIZE_INVALID",
    ),
    "over-long last": (
        lambda w: w.send("GET", f"/v2/{NAME}/tags/list?last={'a' * 300}"),
        400,
        "PAGINATION_NUMBER_INVALID",
    ),
    "unknown upload id": (
        lambda w: w.send("PATCH", f"/v2/{NAME}/blobs/uploads/{'0' * 8}-0000-0000-0000-{'0' * 12}"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    "upload id that is a path": (
        raw(
            "PATCH /v2/{name}/blobs/uploads/..%2F..%2Fblobs HTTP/1.1\nHost: x\nContent-Length: 1\n",
            b"z",
        ),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    "session used through another repository": (
        lambda w: w.send("PUT", w.session.replace(NAME, "other/repo") + f"?digest={GOOD}"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    ),
    "closing PUT without a digest": (lambda w: w.send("PUT", w.session), 400, "DIGEST_INVALID"),
    "closing PUT with the wrong digest": (
        lambda w: w.send("PUT", f"{w.session}?digest={GOOD}"),
        400,
        "DIGEST_INVALID",
    ),
    "closing PUT with an unsupported digest": (
        lambda w: w.send("PUT", f"{w.session}?digest=sha1:{'a' * 40}"),
        400,
        "DIGEST_INVALID",
    ),
    "unsatisfiable Range": (
        lambda w: w.send(
            "GET", f"/v2/{NAME}/blobs/{sha256(IMAGE.config)}", headers={"Range": "bytes=99999-"}
        ),
        416,
        None,
    ),
    "malformed Range": (
        lambda w: w.send(
            "GET", f"/v2/{NAME}/blobs/{sha256(IMAGE.config)}", headers={"Range": "bytes=z-"}
        ),
        416,
        None,
    ),
    "Content-Length shorter than the body": (
        lying_length(b"0123456789", "Content-Length: 4\n"),
        400,
        "DIGEST_INVALID",
    ),
    "missing Content-Length": (lying_length(b"0123456789", ""), 400, "DIGEST_INVALID"),
    "negative page size": (lambda w: w.send("GET", f"/v2/{NAME}/tags/list?n=-1"), 400, None),
    "referrers of a malformed digest": (
        lambda w: w.send("GET", f"/v2/{NAME}/referrers/sha256:zz"),
        400,
        "DIGEST_INVALID",
    ),
    "header over the size limit": (
        raw(f"GET /v2/{{name}}/tags/list HTTP/1.1\nHost: x\nX-Big: {'a' * 10000}\n"),
        400,
        None,
    ),
    "method the endpoint does not support": (
        lambda w: w.send("POST", f"/v2/{NAME}/manifests/v1", b"{}"),
        405,
        "UNSUPPORTED",
    ),
    "unknown manifest": (
        lambda w: w.send("GET", f"/v2/{NAME}/manifests/nope"),
        404,
        "MANIFEST_UNKNOWN",
    ),
    "unknown repository": (
        lambda w: w.send("GET", "/v2/no/such/manifests/latest"),
        404,
        "NAME_UNKNOWN",
    ),
}


@pytest.fixture
async def world(origin: Client, origin_config: OriginConfig) -> World:
    await push_image(origin, NAME, "v1", IMAGE)
    async with origin.post(f"/v2/{NAME}/blobs/uploads/") as r:
        session = r.headers["Location"]
    async with origin.patch(session, data=SESSION_BYTES) as r:
        assert r.status == 202
    scope = f"repository:{NAME}:pull,push,delete"
    return World(origin, session, await token_for(origin, origin_config.data_dir, scope))


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_is_refused_and_changes_nothing(
    world: World, origin_config: OriginConfig, case: str
) -> None:
    send, status, code = CASES[case]
    before = snapshot(origin_config.data_dir)
    response = await send(world)
    assert response.status == status, response
    if code is not None:
        assert response.code() == code
    assert changes(before, snapshot(origin_config.data_dir)) == {}


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


async def test_a_body_cut_short_stores_nothing(world: World, origin_config: OriginConfig) -> None:
    """Content-Length promises more than arrives; the client goes away mid-body."""
    before = snapshot(origin_config.data_dir)
    data = b"q" * 1000
    _, writer = await asyncio.open_connection("127.0.0.1", world.port)
    head = (
        f"POST /v2/{NAME}/blobs/uploads/?digest={sha256(data)} HTTP/1.1\n{world.host()}"
        f"Content-Length: {len(data)}\n\n"
    )
    writer.write(head.replace("\n", "\r\n").encode() + data[:100])
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.3)
    async with world.client.head(f"/v2/{NAME}/blobs/{sha256(data)}") as r:
        assert r.status == 404
    assert changes(before, snapshot(origin_config.data_dir)) == {}
