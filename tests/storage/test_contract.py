"""The storage driver contract (:mod:`ocicore.storage.driver`), run against every driver: the
filesystem, and S3 (on moto's server, a real child process speaking the S3 protocol).

Bodies are a few MiB and cross S3's 5 MiB part boundaries in uneven chunks, so that the S3
driver's parts, tails and checkpoints are all exercised."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from ocicore.storage.driver import NotFound, OffsetMismatch, StorageDriver
from ocicore.storage.filesystem import FilesystemDriver
from ocicore.storage.s3 import S3Driver
from tests.storage.moto import MotoServer

MiB = 1 << 20
PART = 5 * MiB  # the smallest part S3 allows, so that small bodies cross part boundaries
PIECE = 256 * 1024 + 7  # what a body yields at a time: never a divisor of a part


class ClientGone(Exception):
    """A body that fails midway, as when a client disconnects."""


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def body(data: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """``data`` in uneven pieces; raises ClientGone once ``fail_after`` bytes went by."""
    for start in range(0, len(data), PIECE):
        if fail_after is not None and start >= fail_after:
            break
        yield data[start : start + PIECE]
        await asyncio.sleep(0)
    if fail_after is not None:
        raise ClientGone


async def read(
    driver: StorageDriver, key: str, offset: int = 0, length: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in driver.read(key, offset, length)])


async def put(driver: StorageDriver, key: str, *pieces: bytes) -> int:
    """Publish the concatenation of ``pieces`` (one append each) at ``key``."""
    upload_id = str(uuid.uuid4())
    await driver.create_upload(upload_id)
    offset = 0
    for piece in pieces:
        offset += await driver.append(upload_id, offset, body(piece))
    return await driver.publish(upload_id, key)


async def upload_ids(driver: StorageDriver) -> set[str]:
    return {upload_id for upload_id, _ in await driver.uploads()}


# -- drivers -----------------------------------------------------------------------------------
@pytest.fixture
async def s3_driver(moto_server: MotoServer) -> AsyncIterator[S3Driver]:
    bucket = await moto_server.new_bucket()
    config = moto_server.config(bucket, prefix="wharf", part_bytes=PART)
    driver = await S3Driver.open("s3", config, moto_server.session)
    yield driver
    await driver.close()
    await asyncio.to_thread(moto_server.reset)


@pytest.fixture
async def fs_driver(tmp_path: Path) -> AsyncIterator[FilesystemDriver]:
    driver = FilesystemDriver(tmp_path / "storage")
    yield driver
    await driver.close()


@pytest.fixture(params=["filesystem", "s3"])
def driver(request: pytest.FixtureRequest) -> StorageDriver:
    name = "fs_driver" if request.param == "filesystem" else "s3_driver"
    found: StorageDriver = request.getfixturevalue(name)
    return found


@pytest.fixture
def traces(request: pytest.FixtureRequest) -> Callable[[StorageDriver], Awaitable[list[str]]]:
    """What remains of uploads in a driver's storage, looked at behind its back."""

    async def look(driver: StorageDriver) -> list[str]:
        if isinstance(driver, FilesystemDriver):
            return sorted(p.name for p in driver.uploads_dir.iterdir())
        assert isinstance(driver, S3Driver)
        server: MotoServer = request.getfixturevalue("moto_server")
        keys, multiparts = await server.contents(driver.config.bucket)
        return [k for k in keys if k.startswith("wharf/_uploads/")] + multiparts

    return look


# -- objects -----------------------------------------------------------------------------------
async def test_a_missing_object_is_not_there(driver: StorageDriver) -> None:
    assert await driver.stat("blobs/missing") is None
    with pytest.raises(NotFound):
        await read(driver, "blobs/missing")
    with pytest.raises(NotFound):
        await read(driver, "blobs/missing", 0, 0)
    with pytest.raises(NotFound):
        await read(driver, "blobs/missing", 10, 5)
    assert not await driver.delete("blobs/missing")
    assert [entry async for entry in driver.scan("blobs/")] == []


async def test_published_object_holds_exactly_the_appended_bytes(
    driver: StorageDriver, traces: Callable[[StorageDriver], Awaitable[list[str]]]
) -> None:
    pieces = [blob(size, seed) for seed, size in enumerate([1, 3 * MiB, 7 * MiB, 0, 2 * MiB])]
    expected = b"".join(pieces)
    tapped: list[bytes] = []
    await driver.create_upload("up-1")
    assert await driver.upload_length("up-1") == 0
    offset = 0
    for piece in pieces:
        assert await driver.append("up-1", offset, body(piece), tapped.append) == len(piece)
        offset += len(piece)
        assert await driver.upload_length("up-1") == offset
    assert b"".join(tapped) == expected  # every byte, in order, once

    assert await driver.publish("up-1", "blobs/sha256/ab/one") == len(expected)
    assert await driver.stat("blobs/sha256/ab/one") == len(expected)
    assert sha(await read(driver, "blobs/sha256/ab/one")) == sha(expected)
    # The upload is over and its bytes are freed.
    with pytest.raises(NotFound):
        await driver.upload_length("up-1")
    assert "up-1" not in await upload_ids(driver)
    assert await traces(driver) == []
    with pytest.raises(NotFound):
        await driver.publish("up-1", "blobs/again")
    await driver.abort("up-1")  # nothing left to abort: no error


async def test_small_and_empty_uploads_publish(driver: StorageDriver) -> None:
    assert await put(driver, "small", b"hello") == 5
    assert await read(driver, "small") == b"hello"
    assert await put(driver, "empty") == 0
    assert await put(driver, "empty-appends", b"", b"") == 0
    for key in ("empty", "empty-appends"):
        assert await driver.stat(key) == 0
        assert await read(driver, key) == b""
        assert await read(driver, key, 0, 10) == b""


async def test_ranged_reads(driver: StorageDriver) -> None:
    data = blob(12 * MiB + 3, 7)
    await put(driver, "ranged", data[: 4 * MiB], data[4 * MiB :])
    size = len(data)
    ranges: list[tuple[int, int | None]] = [
        (0, None),
        (0, 1),
        (1, 10),
        (PART - 3, 6),  # across the first part boundary
        (PART, PART),  # exactly the second part
        (2 * PART - 1, 2),
        (2 * PART, None),  # the tail
        (size - 10, 100),  # a length past the end: what there is
        (size - 1, None),
        (size, None),  # at the end: nothing
        (size + 100, 10),  # past the end: nothing
        (3, 0),  # no bytes
    ]
    for offset, length in ranges:
        end = size if length is None else offset + length
        assert await read(driver, "ranged", offset, length) == data[offset:end], (offset, length)


async def test_reads_stream_in_chunks(driver: StorageDriver) -> None:
    data = blob(3 * MiB + 5, 8)
    await put(driver, "chunked", data)
    chunks = [chunk async for chunk in driver.read("chunked")]
    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) <= 4 * MiB
    assert b"".join(chunks) == data


async def test_list_finds_published_objects_with_sizes(driver: StorageDriver) -> None:
    for key, size in [("a/b/1", 1), ("a/b/2", 2), ("a/c", 3), ("ab", 4)]:
        await put(driver, key, b"x" * size)
    await driver.create_upload("not-an-object")
    await driver.append("not-an-object", 0, body(b"y" * 10))
    now = datetime.now(UTC)

    async def listed(prefix: str) -> dict[str, int]:
        found = {}
        async for entry in driver.scan(prefix):
            assert abs(entry.modified - now) < timedelta(minutes=5)
            found[entry.key] = entry.size
        return found

    assert await listed("a/b/") == {"a/b/1": 1, "a/b/2": 2}
    assert await listed("a/") == {"a/b/1": 1, "a/b/2": 2, "a/c": 3}
    assert await listed("a") == {"a/b/1": 1, "a/b/2": 2, "a/c": 3, "ab": 4}
    assert await listed("") == {"a/b/1": 1, "a/b/2": 2, "a/c": 3, "ab": 4}  # no uploads
    assert await listed("a/b/1") == {"a/b/1": 1}
    assert await listed("z/") == {}


async def test_delete_says_whether_there_was_an_object(driver: StorageDriver) -> None:
    await put(driver, "doomed", b"bytes")
    assert await driver.delete("doomed")
    assert await driver.stat("doomed") is None
    with pytest.raises(NotFound):
        await read(driver, "doomed")
    assert not await driver.delete("doomed")


async def test_publishing_over_an_object_replaces_it(driver: StorageDriver) -> None:
    big, small = blob(6 * MiB + 1, 1), b"small"
    assert await put(driver, "replaced", small) == len(small)
    assert await put(driver, "replaced", big) == len(big)
    assert sha(await read(driver, "replaced")) == sha(big)
    assert await put(driver, "replaced", small) == len(small)
    assert await driver.stat("replaced") == len(small)
    assert await read(driver, "replaced") == small


async def test_a_move_puts_the_object_at_its_new_key_and_only_there(driver: StorageDriver) -> None:
    data = blob(6 * MiB + 3, 5)
    await put(driver, "staging/x", data)
    await put(driver, "final", b"older")
    assert await driver.move("staging/x", "final") == len(data)
    assert await driver.stat("staging/x") is None
    assert sha(await read(driver, "final")) == sha(data)
    with pytest.raises(NotFound):
        await driver.move("staging/x", "elsewhere")
    assert await driver.stat("elsewhere") is None


BAD_KEYS = ["../x", "a//b", "", "/a", "a/", "a/../b", "./a", "a/.", "a b", "a\\b", "x" * 1025]
BAD_IDS = ["", "a/b", "..", ".hidden", "a b"]


async def test_invalid_keys_and_ids_are_refused(driver: StorageDriver) -> None:
    await driver.create_upload("good")
    await driver.append("good", 0, body(b"abc"))
    reserved = "uploads/good" if isinstance(driver, FilesystemDriver) else "_uploads/good/state"
    for key in [*BAD_KEYS, reserved]:
        with pytest.raises(ValueError, match=r"key|uploads"):
            await driver.stat(key)
        with pytest.raises(ValueError, match=r"key|uploads"):
            await read(driver, key)
        with pytest.raises(ValueError, match=r"key|uploads"):
            await driver.delete(key)
        with pytest.raises(ValueError, match=r"key|uploads"):
            driver.local_path(key)
        with pytest.raises(ValueError, match=r"key|uploads"):
            await driver.publish("good", key)
    for prefix in ["../", "a//b/", "/a/"]:
        with pytest.raises(ValueError, match="key"):
            [entry async for entry in driver.scan(prefix)]
    for upload_id in BAD_IDS:
        with pytest.raises(ValueError, match="upload id"):
            await driver.create_upload(upload_id)
        with pytest.raises(ValueError, match="upload id"):
            await driver.upload_length(upload_id)
        with pytest.raises(ValueError, match="upload id"):
            await driver.append(upload_id, 0, body(b"x"))
        with pytest.raises(ValueError, match="upload id"):
            await driver.publish(upload_id, "fine")
        with pytest.raises(ValueError, match="upload id"):
            await driver.abort(upload_id)
    # Nothing was touched: the one upload is as it was, and there is no object.
    assert await upload_ids(driver) == {"good"}
    assert await driver.upload_length("good") == 3
    assert [entry async for entry in driver.scan("")] == []


async def test_presigned_urls(driver: StorageDriver) -> None:
    data = blob(100_000, 3)
    await put(driver, "blobs/signed", data)
    assert await driver.presign("blobs/signed", 60) is None  # not asked for
    if not isinstance(driver, S3Driver):
        return
    config = dataclasses.replace(driver.config, presign=True)
    signing = await S3Driver.open("signing", config)
    try:
        url = await signing.presign("blobs/signed", 60)
    finally:
        await signing.close()
    assert url is not None
    assert "Signature=" in url
    assert "Expires=60" in url
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert await response.read() == data


# -- uploads -----------------------------------------------------------------------------------
async def test_create_upload_twice_is_refused(driver: StorageDriver) -> None:
    await driver.create_upload("twice")
    await driver.append("twice", 0, body(b"kept"))
    with pytest.raises(FileExistsError):
        await driver.create_upload("twice")
    assert await driver.upload_length("twice") == 4


async def test_unknown_uploads_are_not_found(driver: StorageDriver) -> None:
    with pytest.raises(NotFound):
        await driver.upload_length("unknown")
    with pytest.raises(NotFound):
        await driver.append("unknown", 0, body(b"x"))
    with pytest.raises(NotFound):
        await driver.publish("unknown", "key")
    await driver.abort("unknown")
    assert await driver.stat("key") is None


async def test_a_failed_append_leaves_the_upload_as_it_was(driver: StorageDriver) -> None:
    first, second, third = blob(3 * MiB, 1), blob(6 * MiB, 2), blob(4 * MiB + 5, 3)
    await driver.create_upload("flaky")
    await driver.append("flaky", 0, body(first))
    # The body fails after all its bytes, then after a part's worth of them, then at once.
    for fail_after in (len(second), PART + 1, 0):
        with pytest.raises(ClientGone):
            await driver.append("flaky", len(first), body(second, fail_after))
        assert await driver.upload_length("flaky") == len(first)
    # A retry at the same offset succeeds, and none of the failed bytes remain.
    tapped: list[bytes] = []
    assert await driver.append("flaky", len(first), body(third), tapped.append) == len(third)
    assert b"".join(tapped) == third
    assert await driver.publish("flaky", "result") == len(first) + len(third)
    assert sha(await read(driver, "result")) == sha(first + third)


async def test_a_failed_append_at_an_earlier_offset_keeps_what_came_before_it(
    driver: StorageDriver,
) -> None:
    first, second, other = blob(3 * MiB, 1), blob(4 * MiB + 9, 2), blob(6 * MiB, 3)
    await driver.create_upload("flaky")
    await driver.append("flaky", 0, body(first))
    await driver.append("flaky", len(first), body(second))
    # A retry at an earlier offset (the second append was never recorded) that fails too:
    # nothing of it remains, and the bytes before the offset are intact.
    with pytest.raises(ClientGone):
        await driver.append("flaky", len(first), body(other, len(other)))
    assert await driver.upload_length("flaky") in (len(first), len(first) + len(second))
    assert await driver.append("flaky", len(first), body(second)) == len(second)
    assert await driver.publish("flaky", "result") == len(first) + len(second)
    assert sha(await read(driver, "result")) == sha(first + second)


async def test_an_append_at_an_earlier_offset_drops_what_was_past_it(
    driver: StorageDriver, traces: Callable[[StorageDriver], Awaitable[list[str]]]
) -> None:
    a, b, c, d = blob(3 * MiB, 1), blob(4 * MiB, 2), blob(2 * MiB + 1, 3), blob(9 * MiB, 4)
    await driver.create_upload("redo")
    for offset, piece in [(0, a), (len(a), b), (len(a) + len(b), c)]:
        await driver.append("redo", offset, body(piece))
    # A retry of the second append, after a crash that kept it from being recorded.
    assert await driver.append("redo", len(a), body(d)) == len(d)
    assert await driver.upload_length("redo") == len(a) + len(d)
    assert await driver.append("redo", len(a) + len(d), body(c)) == len(c)
    assert await driver.publish("redo", "redone") == len(a) + len(d) + len(c)
    assert sha(await read(driver, "redone")) == sha(a + d + c)

    # Back to the start, and an empty append at an earlier offset truncates too.
    await driver.create_upload("again")
    await driver.append("again", 0, body(a))
    await driver.append("again", len(a), body(b))
    await driver.append("again", 0, body(c))
    assert await driver.upload_length("again") == len(c)
    await driver.append("again", len(c), body(b"more"))
    assert await driver.append("again", len(c), body(b"")) == 0
    assert await driver.upload_length("again") == len(c)
    assert await driver.publish("again", "again") == len(c)
    assert await read(driver, "again") == c
    assert await traces(driver) == []


async def test_a_cancelled_append_leaves_the_upload_as_it_was(driver: StorageDriver) -> None:
    first, second = blob(3 * MiB, 1), blob(8 * MiB, 2)
    await driver.create_upload("cancelled")
    await driver.append("cancelled", 0, body(first))
    halfway = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        async for chunk in body(second):
            yield chunk
        halfway.set()
        await asyncio.Event().wait()  # a client that stops sending

    append = asyncio.create_task(driver.append("cancelled", len(first), stalling()))
    await halfway.wait()
    await asyncio.sleep(0.1)  # its part uploads under way
    append.cancel()
    with pytest.raises(asyncio.CancelledError):
        await append
    assert await driver.upload_length("cancelled") == len(first)
    assert await driver.append("cancelled", len(first), body(b"end")) == 3
    assert await driver.publish("cancelled", "result") == len(first) + 3
    assert sha(await read(driver, "result")) == sha(first + b"end")


async def test_an_append_past_the_end_is_refused(driver: StorageDriver) -> None:
    data = blob(MiB, 1)
    await driver.create_upload("gap")
    await driver.append("gap", 0, body(data))
    for offset in (len(data) + 1, 10 * MiB):
        with pytest.raises(OffsetMismatch):
            await driver.append("gap", offset, body(b"x"))
    await driver.append("gap", len(data), body(b"end"))
    assert await driver.publish("gap", "gapless") == len(data) + 3
    assert await read(driver, "gapless") == data + b"end"


async def test_a_refused_append_leaves_the_upload_as_it_was(driver: StorageDriver) -> None:
    await driver.create_upload("gap")
    with pytest.raises(OffsetMismatch):
        await driver.append("gap", 1, body(b"x"))
    assert await driver.upload_length("gap") == 0
    await driver.append("gap", 0, body(b"data"))
    with pytest.raises(OffsetMismatch):
        await driver.append("gap", 10, body(b"x"))
    assert await driver.upload_length("gap") == 4
    assert await driver.publish("gap", "gapless") == 4
    assert await read(driver, "gapless") == b"data"


async def test_abort_frees_the_upload(
    driver: StorageDriver, traces: Callable[[StorageDriver], Awaitable[list[str]]]
) -> None:
    await driver.create_upload("dropped")
    await driver.append("dropped", 0, body(blob(6 * MiB, 1)))
    await driver.create_upload("kept")
    await driver.abort("dropped")
    assert await upload_ids(driver) == {"kept"}
    with pytest.raises(NotFound):
        await driver.upload_length("dropped")
    with pytest.raises(NotFound):
        await driver.append("dropped", 6 * MiB, body(b"x"))
    await driver.abort("dropped")  # again: nothing to do
    await driver.abort("kept")
    assert await traces(driver) == []
    assert await driver.uploads() == []


async def test_uploads_are_listed_with_when_they_changed(driver: StorageDriver) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    await driver.create_upload("one")
    await driver.create_upload("two")
    await driver.append("two", 0, body(b"bytes"))
    listed = dict(await driver.uploads())
    assert listed.keys() == {"one", "two"}
    for when in listed.values():
        assert before <= when <= datetime.now(UTC) + timedelta(seconds=5)
    await driver.publish("one", "one")
    assert await upload_ids(driver) == {"two"}


# -- S3 only -----------------------------------------------------------------------------------
async def test_s3_accepts_only_the_offsets_of_earlier_appends(s3_driver: S3Driver) -> None:
    """The contract allows a driver to refuse an offset no append ended at (S3 must: it
    cannot cut an upload anywhere, only go back to an earlier append's parts and tail)."""
    a, b = blob(3 * MiB, 1), blob(4 * MiB, 2)
    await s3_driver.create_upload("u")
    await s3_driver.append("u", 0, body(a))
    await s3_driver.append("u", len(a), body(b))
    for offset in (1, len(a) - 1, len(a) + 1, PART):
        with pytest.raises(OffsetMismatch):
            await s3_driver.append("u", offset, body(b"x"))
    await s3_driver.append("u", 0, body(b))  # back to the start: a and b are gone
    with pytest.raises(OffsetMismatch):
        await s3_driver.append("u", len(a), body(b"x"))
    assert await s3_driver.upload_length("u") == len(b)


async def test_s3_copies_large_objects_in_ranges(
    s3_driver: S3Driver, traces: Callable[[StorageDriver], Awaitable[list[str]]]
) -> None:
    s3_driver.copy_limit = 6 * MiB  # as if above S3's 5 GiB for one CopyObject
    s3_driver.copy_part_bytes = PART
    data = blob(12 * MiB + 1, 5)
    assert await put(s3_driver, "big", data[:MiB], data[MiB:]) == len(data)
    assert sha(await read(s3_driver, "big")) == sha(data)
    assert await put(s3_driver, "big", data[: 6 * MiB]) == 6 * MiB  # one CopyObject
    assert sha(await read(s3_driver, "big")) == sha(data[: 6 * MiB])
    assert await traces(s3_driver) == []


async def test_s3_publish_may_be_retried_after_failing_midway(
    s3_driver: S3Driver,
    traces: Callable[[StorageDriver], Awaitable[list[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = blob(11 * MiB, 6)
    await s3_driver.create_upload("u")
    await s3_driver.append("u", 0, body(data))

    async def broken(source: str, target: str, size: int) -> None:
        raise ConnectionResetError

    # The multipart upload is completed, then the copy to the final key fails.
    monkeypatch.setattr(s3_driver, "_copy", broken)
    with pytest.raises(ConnectionResetError):
        await s3_driver.publish("u", "blobs/retried")
    monkeypatch.undo()
    assert await s3_driver.stat("blobs/retried") is None
    assert await upload_ids(s3_driver) == {"u"}
    with pytest.raises(NotFound):  # what the retry publishes may not change any more
        await s3_driver.append("u", len(data), body(b"more"))
    assert await s3_driver.publish("u", "blobs/retried") == len(data)
    assert sha(await read(s3_driver, "blobs/retried")) == sha(data)
    assert await traces(s3_driver) == []


async def test_s3_abort_removes_what_a_crash_left(
    s3_driver: S3Driver,
    moto_server: MotoServer,
    traces: Callable[[StorageDriver], Awaitable[list[str]]],
) -> None:
    bucket = s3_driver.config.bucket
    await s3_driver.create_upload("crashed")
    async with moto_server.client() as client:
        # A multipart upload an append started and never recorded, and the leftovers of
        # an upload whose state is gone.
        await client.create_multipart_upload(Bucket=bucket, Key="wharf/_uploads/crashed/data")
        await client.put_object(Bucket=bucket, Key="wharf/_uploads/ghost/tail-1", Body=b"x")
    assert await upload_ids(s3_driver) == {"crashed", "ghost"}
    await s3_driver.abort("crashed")
    await s3_driver.abort("ghost")
    assert await s3_driver.uploads() == []
    assert await traces(s3_driver) == []
