"""Torrent metainfo at the origin: deterministic (two origins holding the same bytes publish
the same info-hash), correct (every piece hash matches the blob), authorized like the blob."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import libtorrent as lt

from ocicore.auth.enforce import SEED_PARAM
from origin.config import OriginConfig
from tests.edges import Upstream, start_origin
from tests.support import push_blob, registry_auth

MiB = 1 << 20


async def torrent(upstream: Upstream, name: str, digest: str) -> tuple[int, bytes, str]:
    async with (
        aiohttp.ClientSession(
            base_url=upstream.url, middlewares=(registry_auth("admin", upstream.password),)
        ) as client,
        client.get(f"/v2/{name}/_wharf/torrents/{digest}") as r,
    ):
        return r.status, await r.read(), r.headers.get("X-Wharf-Info-Hash", "")


async def test_metainfo_is_correct_and_the_same_on_every_origin(
    upstream: Upstream,
    origin_config: OriginConfig,
    tmp_path: Path,
    fresh_database: Callable[[], Awaitable[str]],
) -> None:
    data = os.urandom(5 * MiB + 12345)
    other = await start_origin(
        dataclasses.replace(
            origin_config, data_dir=tmp_path / "other", database_url=await fresh_database()
        )
    )
    try:
        hashes = []
        for origin in (upstream, other):
            async with aiohttp.ClientSession(
                base_url=origin.url, middlewares=(registry_auth("admin", origin.password),)
            ) as client:
                digest = await push_blob(client, "team/app", data)
            status, body, info_hash = await torrent(origin, "team/app", digest)
            assert status == 200
            again = await torrent(origin, "team/app", digest)  # now from disk
            assert again == (200, body, info_hash)
            hashes.append(info_hash)
        assert hashes[0] == hashes[1]

        info = lt.torrent_info(body)
        assert str(info.info_hashes().v1) == info_hash
        assert info.name() == digest.removeprefix("sha256:")
        assert info.total_size() == len(data)
        assert info.piece_length() == 256 * 1024
        for piece in range(info.num_pieces()):
            start = piece * info.piece_length()
            chunk = data[start : start + info.piece_length()]
            assert info.hash_for_piece(piece) == hashlib.sha1(chunk).digest()
    finally:
        await other.server.close()


async def test_metainfo_is_authorized_like_the_blob(upstream: Upstream) -> None:
    async with aiohttp.ClientSession(
        base_url=upstream.url, middlewares=(registry_auth("admin", upstream.password),)
    ) as client:
        digest = await push_blob(client, "team/app", os.urandom(MiB))
        await push_blob(client, "team/other", b"something else")
    async with (
        aiohttp.ClientSession(base_url=upstream.url) as anonymous,
        anonymous.get(f"/v2/team/app/_wharf/torrents/{digest}") as r,
    ):
        assert r.status == 401
        assert "repository:team/app:pull" in r.headers["WWW-Authenticate"]
    status, body, _ = await torrent(upstream, "team/other", digest)
    assert status == 404  # a repository that does not hold the blob
    assert b"BLOB_UNKNOWN" in body


async def test_a_web_seed_token_opens_one_blob_of_one_repository_and_nothing_else(
    upstream: Upstream,
) -> None:
    """The token that comes with the metainfo (for libtorrent, which cannot send headers)
    rides in the query string and lets its bearer GET that blob with Range, nothing more."""
    data = os.urandom(MiB)
    async with aiohttp.ClientSession(
        base_url=upstream.url, middlewares=(registry_auth("admin", upstream.password),)
    ) as client:
        digest = await push_blob(client, "team/app", data)
        other = await push_blob(client, "team/app", b"another blob")
        await push_blob(client, "team/copy", data)
        async with client.get(f"/v2/team/app/_wharf/torrents/{digest}") as r:
            token = r.headers["X-Wharf-Seed-Token"]
    async with aiohttp.ClientSession(base_url=upstream.url) as anonymous:
        seed = {SEED_PARAM: token}
        async with anonymous.get(
            f"/v2/team/app/blobs/{digest}", params=seed, headers={"Range": "bytes=10-19"}
        ) as r:
            assert r.status == 206
            assert await r.read() == data[10:20]
        for path in (
            f"/v2/team/app/blobs/{other}",  # another blob
            f"/v2/team/copy/blobs/{digest}",  # the same blob, another repository
            "/v2/team/app/manifests/latest",
            "/v2/team/app/tags/list",
            f"/v2/team/app/_wharf/torrents/{digest}",
        ):
            async with anonymous.get(path, params=seed) as r:
                assert r.status == 401, path
        async with anonymous.delete(f"/v2/team/app/blobs/{digest}", params=seed) as r:
            assert r.status == 401
        async with anonymous.get(
            f"/v2/team/app/blobs/{digest}", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 401  # not a registry token either


async def test_a_large_pushed_blob_has_its_metainfo_before_anyone_asks(
    origin_config: OriginConfig, tmp_path: Path
) -> None:
    config = dataclasses.replace(
        origin_config, data_dir=tmp_path / "eager", torrent_precompute_bytes=2 * MiB
    )
    origin = await start_origin(config)
    try:
        async with aiohttp.ClientSession(
            base_url=origin.url, middlewares=(registry_auth("admin", origin.password),)
        ) as client:
            large = await push_blob(client, "team/app", os.urandom(3 * MiB))
            await push_blob(client, "team/app", os.urandom(MiB))  # below: only when asked
        folder = config.data_dir / "torrents" / "sha256"
        for _ in range(100):
            if (folder / f"{large.removeprefix('sha256:')}.torrent").exists():
                break
            await asyncio.sleep(0.05)
        assert [p.name for p in folder.iterdir()] == [f"{large.removeprefix('sha256:')}.torrent"]
        status, body, _ = await torrent(origin, "team/app", large)
        assert status == 200
        assert (folder / f"{large.removeprefix('sha256:')}.torrent").read_bytes() == body
    finally:
        await origin.server.close()
