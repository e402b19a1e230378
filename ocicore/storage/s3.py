"""Storage on S3 or any S3-compatible service (AWS, MinIO, Ceph RGW...), over aiobotocore.

Layout inside the bucket, under the configured prefix::

    <key>                      objects
    _uploads/<id>/state        the upload's state, a small JSON object rewritten by each append
    _uploads/<id>/tail-<n>     bytes of the upload past its last whole part
    _uploads/<id>/data         the multipart upload's key (an object only while publishing)

An upload's bytes are the parts of an S3 multipart upload (each exactly ``part_bytes``),
followed by a *tail* object holding the fewer than ``part_bytes`` bytes that do not fill a
part. An append streams the old tail and the new body, cuts whole parts off the front and
uploads them (:meth:`S3Driver.append`), and puts what remains as a new tail, under a name of
its own, so that until the state is rewritten the upload is exactly as it was: a PUT of the
state is atomic, and it is the only thing that changes what the upload holds.

The state lists the multipart upload's id, its parts (number, ETag, size; in ascending
numbers, as ``CompleteMultipartUpload`` wants them) and one *checkpoint* per earlier append:
the length the upload had then, how many parts lay below it, and its tail. An append at a
checkpoint's offset starts from that checkpoint's parts and tail, which drops whatever came
after (the contract's retry after a crash between an append and its recording). New parts
are numbered above every part the state lists, so an append that fails (or that truncates
and then fails) never replaces a part the state relies on; its stray parts are not listed
at completion, which discards them.

The multipart upload is created with the first whole part: an upload smaller than a part
never has one, and publishing it copies its tail (server-side) to the final key. Otherwise
publishing records in the state that it began (appends are refused from then on), adds the
tail as the last part (UploadPartCopy), completes the multipart upload onto ``data`` and
copies that to the final key (a multipart copy above 5 GiB). A publish that failed midway
may be retried: it completes again unless ``data`` already holds the upload. Then the state
is deleted, and the rest; :meth:`S3Driver.uploads` lists whatever a crash leaves, for
:meth:`S3Driver.abort`, which also aborts any multipart upload on ``data``.

Every checkpoint's tail is kept until the upload ends, so many appends smaller than a part
store up to ``part_bytes`` each until then.

Limits: a multipart upload has at most 10,000 parts, so an upload holds at most
``9999 * part_bytes`` bytes plus a tail (about 78 GiB with the default 8 MiB parts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import AioSession  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ocicore.storage.driver import (
    Entry,
    NotFound,
    OffsetMismatch,
    Tap,
    check_key,
    check_upload_id,
)

MiB = 1 << 20
GiB = 1 << 30

MIN_PART_BYTES = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_BYTES = 5 * GiB
MAX_PARTS = 10_000
READ_CHUNK = 1 * MiB  # what read() yields at a time (the last piece may be shorter)
TAP_BATCH = 1 * MiB  # bytes gathered before each hop to the tap's thread
PARTS_IN_FLIGHT = 2  # part uploads an append runs while it keeps reading its body
CONCURRENCY = 8  # copies of parts and deletions run at once
UPLOADS = "_uploads"
STATE = "state"
DATA = "data"

T = TypeVar("T")


class UploadTooLarge(Exception):
    """The upload would need more parts than a multipart upload may have."""


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    prefix: str = ""  # inside the bucket; a "/" is added when missing
    endpoint_url: str = ""  # empty: AWS
    region: str = "us-east-1"
    access_key_id: str = ""  # empty (with the secret): the default credential chain
    secret_access_key: str = field(default="", repr=False)
    part_bytes: int = 8 * MiB
    presign: bool = False  # presign() hands out pre-signed GET URLs
    addressing_style: str = "path"  # "path", "virtual" or "auto"

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("S3 storage needs a bucket")
        if not MIN_PART_BYTES <= self.part_bytes <= MAX_PART_BYTES:
            raise ValueError(f"part_bytes must be between {MIN_PART_BYTES} and {MAX_PART_BYTES}")
        if self.addressing_style not in ("path", "virtual", "auto"):
            raise ValueError(f"unknown addressing style {self.addressing_style!r}")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        if self.prefix.startswith("/"):
            raise ValueError("the key prefix must not start with '/'")

    @property
    def key_prefix(self) -> str:
        return self.prefix if not self.prefix or self.prefix.endswith("/") else self.prefix + "/"


# -- the upload's state ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Part:
    number: int
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    offset: int  # the upload's length at the end of an append
    parts: int  # how many of the state's parts it holds
    tail: str | None  # the name of its tail object under the upload's folder
    tail_size: int


@dataclass(slots=True)
class _State:
    multipart: str | None = None  # the S3 UploadId, created with the first whole part
    seq: int = 0  # the last tail number handed out
    parts: list[_Part] = field(default_factory=list)
    checkpoints: list[_Checkpoint] = field(default_factory=lambda: [_Checkpoint(0, 0, None, 0)])
    publishing: bool = False  # its multipart upload is being completed: no more appends

    @property
    def current(self) -> _Checkpoint:
        return self.checkpoints[-1]

    @property
    def length(self) -> int:
        return self.current.offset

    def encode(self) -> bytes:
        return json.dumps(
            {
                "version": 1,
                "multipart": self.multipart,
                "seq": self.seq,
                "parts": [[p.number, p.etag, p.size] for p in self.parts],
                "checkpoints": [[c.offset, c.parts, c.tail, c.tail_size] for c in self.checkpoints],
                "publishing": self.publishing,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> _State:
        raw = json.loads(data)
        if raw.get("version") != 1:
            raise ValueError(f"unknown upload state version {raw.get('version')!r}")
        return cls(
            multipart=raw["multipart"],
            seq=int(raw["seq"]),
            parts=[_Part(int(n), str(etag), int(size)) for n, etag, size in raw["parts"]],
            checkpoints=[
                _Checkpoint(int(offset), int(parts), tail, int(size))
                for offset, parts, tail, size in raw["checkpoints"]
            ],
            publishing=bool(raw.get("publishing", False)),
        )


# -- helpers ---------------------------------------------------------------------------------
def _code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def _status(error: Exception) -> int:
    meta = getattr(error, "response", {}).get("ResponseMetadata", {})
    return int(meta.get("HTTPStatusCode", 0))


def _missing(error: Exception) -> bool:
    return _code(error) in ("404", "NoSuchKey", "NotFound") or _status(error) == 404


async def _run_all(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the calls, at most ``limit`` at once; their results in order. When one fails the
    others are cancelled and its exception is raised."""
    semaphore = asyncio.Semaphore(limit)

    async def run(call: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await call()

    tasks = [asyncio.create_task(run(call)) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class _Tapper:
    """Hands an append's bytes to its tap in batches, off the event loop."""

    def __init__(self, tap: Tap | None) -> None:
        self._tap = tap
        self._pending: list[bytes] = []
        self._size = 0

    async def feed(self, chunk: bytes) -> None:
        if self._tap is not None:
            self._pending.append(chunk)
            self._size += len(chunk)
            if self._size >= TAP_BATCH:
                await self.flush()

    async def flush(self) -> None:
        if self._tap is not None and self._pending:
            data = b"".join(self._pending)
            self._pending, self._size = [], 0
            await asyncio.to_thread(self._tap, data)


class _PartCutter:
    """Cuts whole parts off the front of the bytes fed to it and uploads them (a few at a time,
    while more bytes arrive), numbered from ``number + 1``; ``buffer`` keeps the rest."""

    def __init__(
        self,
        part_bytes: int,
        number: int,
        start: Callable[[], Awaitable[str]],
        upload: Callable[[str, int, bytes], Coroutine[Any, Any, _Part]],
    ) -> None:
        self.buffer = bytearray()
        self._part_bytes = part_bytes
        self._number = number
        self._start = start
        self._upload = upload
        self._tasks: list[asyncio.Task[_Part]] = []

    async def feed(self, data: bytes) -> None:
        self.buffer += data
        size = self._part_bytes
        while len(self.buffer) >= size:
            multipart = await self._start()
            self._number += 1
            if self._number >= MAX_PARTS:  # the last number is kept for the tail
                raise UploadTooLarge(f"more than {MAX_PARTS - 1} parts of {size} bytes")
            part = bytes(self.buffer[:size])
            del self.buffer[:size]
            await self._make_room()
            self._tasks.append(asyncio.create_task(self._upload(multipart, self._number, part)))

    async def _make_room(self) -> None:
        """Wait until fewer than PARTS_IN_FLIGHT uploads run; raise if one failed."""
        while True:
            for task in self._tasks:
                if task.done():
                    task.result()
            running = [task for task in self._tasks if not task.done()]
            if len(running) < PARTS_IN_FLIGHT:
                return
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)

    async def parts(self) -> list[_Part]:
        return [await task for task in self._tasks]

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class S3Driver:
    # Objects up to ``copy_limit`` are copied with one CopyObject (S3 allows 5 GiB), larger
    # ones in ``copy_part_bytes`` ranges.
    copy_limit: int = 5 * GiB
    copy_part_bytes: int = 512 * MiB

    def __init__(
        self, name: str, config: S3Config, client: Any, closer: AsyncExitStack | None = None
    ) -> None:
        self.name = name
        self.config = config
        self._client: Any = client  # aiobotocore has no type stubs
        self._closer = closer
        self._bucket = config.bucket
        self._prefix = config.key_prefix
        self._uploads = f"{self._prefix}{UPLOADS}/"

    @classmethod
    async def open(cls, name: str, config: S3Config, session: Any = None) -> S3Driver:
        """A driver with a client of its own (released by :meth:`close`), made by
        ``session`` (an ``AioSession``: sharing one spares loading botocore's models again)."""
        credentials: dict[str, str] = {}
        if config.access_key_id:
            credentials = {
                "aws_access_key_id": config.access_key_id,
                "aws_secret_access_key": config.secret_access_key,
            }
        client_config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": config.addressing_style},
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=32,
            # Only the checksums S3 requires: several S3-compatible services reject the
            # ones recent botocore adds to every request by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        closer = AsyncExitStack()
        try:
            client = await closer.enter_async_context(
                (session or AioSession()).create_client(
                    "s3",
                    region_name=config.region,
                    endpoint_url=config.endpoint_url or None,
                    config=client_config,
                    **credentials,
                )
            )
        except BaseException:
            await closer.aclose()
            raise
        return cls(name, config, client, closer)

    async def ping(self) -> None:
        await self._client.head_bucket(Bucket=self._bucket)

    async def close(self) -> None:
        if self._closer is not None:
            closer, self._closer = self._closer, None
            await closer.aclose()

    # -- keys ------------------------------------------------------------------------------
    def _object(self, key: str) -> str:
        check_key(key)
        if key.split("/", 1)[0] == UPLOADS:
            raise ValueError(f"{UPLOADS}/ holds uploads, not objects")
        return self._prefix + key

    def _upload(self, upload_id: str) -> str:
        """The folder of an upload's objects (ending with "/")."""
        return f"{self._uploads}{check_upload_id(upload_id)}/"

    # -- small S3 operations ---------------------------------------------------------------
    async def _head(self, s3key: str) -> int | None:
        try:
            response = await self._client.head_object(Bucket=self._bucket, Key=s3key)
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return int(response["ContentLength"])

    async def _get_bytes(self, s3key: str) -> bytes | None:
        try:
            response = await self._client.get_object(Bucket=self._bucket, Key=s3key)
        except ClientError as error:
            if _missing(error):
                return None
            raise
        async with response["Body"] as stream:
            return bytes(await stream.read())

    async def _put(self, s3key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        await self._client.put_object(Bucket=self._bucket, Key=s3key, Body=data, **extra)

    async def _delete(self, s3key: str) -> None:
        await self._client.delete_object(Bucket=self._bucket, Key=s3key)  # 204 if missing

    async def _abort_multipart(self, s3key: str, multipart: str) -> None:
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=s3key, UploadId=multipart
            )
        except ClientError as error:
            if _code(error) != "NoSuchUpload" and not _missing(error):
                raise

    async def _list(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                yield item

    # -- objects ---------------------------------------------------------------------------
    async def stat(self, key: str) -> int | None:
        return await self._head(self._object(key))

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        s3key = self._object(key)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range {offset}+{length}")
        return self._read(key, s3key, offset, length)

    async def _read(
        self, key: str, s3key: str, offset: int, length: int | None
    ) -> AsyncIterator[bytes]:
        if length == 0:  # no range says "no bytes": only check that the object is there
            if await self._head(s3key) is None:
                raise NotFound(key)
            return
        extra: dict[str, str] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            extra["Range"] = f"bytes={offset}-{end}"
        try:
            response = await self._client.get_object(Bucket=self._bucket, Key=s3key, **extra)
        except ClientError as error:
            if _missing(error):
                raise NotFound(key) from None
            if _code(error) == "InvalidRange" or _status(error) == 416:
                return  # the object is there, and ends before ``offset``
            raise
        async with response["Body"] as stream:
            pending: list[bytes] = []
            size = 0
            async for piece in stream.iter_chunks(READ_CHUNK):
                pending.append(piece)
                size += len(piece)
                if size >= READ_CHUNK:
                    yield b"".join(pending)
                    pending, size = [], 0
            if pending:
                yield b"".join(pending)

    def local_path(self, key: str) -> Path | None:
        self._object(key)
        return None

    async def presign(self, key: str, expires_seconds: float) -> str | None:
        s3key = self._object(key)
        if not self.config.presign:
            return None
        url = await self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": s3key},
            ExpiresIn=max(1, int(expires_seconds)),
        )
        return str(url)

    async def delete(self, key: str) -> bool:
        s3key = self._object(key)
        if await self._head(s3key) is None:
            return False
        await self._client.delete_object(Bucket=self._bucket, Key=s3key)
        return True

    async def move(self, source: str, target: str) -> int:
        size = await self.stat(source)
        if size is None:
            raise NotFound(source)
        await self._copy(self._object(source), self._object(target), size)
        await self._delete(self._object(source))
        return size

    def scan(self, prefix: str) -> AsyncIterator[Entry]:
        folder = prefix.rpartition("/")[0]
        if folder:
            self._object(folder)
        return self._list_objects(prefix)

    async def _list_objects(self, prefix: str) -> AsyncIterator[Entry]:
        skip = len(self._prefix)
        async for item in self._list(self._prefix + prefix):
            key = str(item["Key"])[skip:]
            if key.startswith(f"{UPLOADS}/"):
                continue
            modified: datetime = item["LastModified"]
            yield Entry(key, int(item["Size"]), modified)

    # -- uploads ---------------------------------------------------------------------------
    async def _load(self, upload_id: str) -> _State:
        data = await self._get_bytes(self._upload(upload_id) + STATE)
        if data is None:
            raise NotFound(upload_id)
        return _State.decode(data)

    async def _save(self, upload_id: str, state: _State) -> None:
        await self._put(self._upload(upload_id) + STATE, state.encode(), "application/json")

    async def create_upload(self, upload_id: str) -> None:
        s3key = self._upload(upload_id) + STATE
        if await self._head(s3key) is not None:
            raise FileExistsError(upload_id)
        await self._put(s3key, _State().encode(), "application/json")

    async def upload_length(self, upload_id: str) -> int:
        return (await self._load(upload_id)).length

    async def _start_multipart(self, upload_id: str, state: _State) -> str:
        """The state's multipart upload, created (and recorded) if it has none yet.

        Recording it changes nothing the upload holds, so an append may do so and fail."""
        if state.multipart is None:
            data = self._upload(upload_id) + DATA
            response = await self._client.create_multipart_upload(Bucket=self._bucket, Key=data)
            multipart = str(response["UploadId"])
            try:
                await self._save(upload_id, replace(state, multipart=multipart))
            except BaseException:
                # Not recorded: not to be left behind (abort() also finds any a crash left).
                with contextlib.suppress(Exception):
                    await self._abort_multipart(data, multipart)
                raise
            state.multipart = multipart
        return state.multipart

    async def _upload_part(self, upload_id: str, multipart: str, number: int, data: bytes) -> _Part:
        try:
            response = await self._client.upload_part(
                Bucket=self._bucket,
                Key=self._upload(upload_id) + DATA,
                UploadId=multipart,
                PartNumber=number,
                Body=data,
            )
        except ClientError as error:
            if _code(error) == "NoSuchUpload":  # published (or aborted) meanwhile
                raise NotFound(upload_id) from None
            raise
        return _Part(number, str(response["ETag"]), len(data))

    async def append(
        self,
        upload_id: str,
        offset: int,
        body: AsyncIterable[bytes],
        tap: Tap | None = None,
    ) -> int:
        folder = self._upload(upload_id)
        state = await self._load(upload_id)
        if state.publishing:
            raise NotFound(upload_id)  # a publish began (and failed): it must be retried
        start = next((c for c in state.checkpoints if c.offset == offset), None)
        if start is None:
            raise OffsetMismatch(offset)
        cutter = _PartCutter(
            self.config.part_bytes,
            # Above every part the state lists, so that no committed part is ever replaced.
            state.parts[-1].number if state.parts else 0,
            partial(self._start_multipart, upload_id, state),
            partial(self._upload_part, upload_id),
        )
        tapper = _Tapper(tap)
        written = 0
        try:
            async for chunk in body:
                if not chunk:
                    continue
                if not written and start.tail is not None:
                    await cutter.feed(await self._read_tail(upload_id, start))
                written += len(chunk)
                await tapper.feed(chunk)
                await cutter.feed(chunk)
            await tapper.flush()
            new_parts = await cutter.parts()
            tail, tail_size, seq = start.tail, start.tail_size, state.seq
            if written:
                tail, tail_size = None, len(cutter.buffer)
                if cutter.buffer:
                    seq += 1
                    tail = f"tail-{seq}"
                    await self._put(folder + tail, bytes(cutter.buffer))
        except BaseException:
            await cutter.cancel()
            raise
        kept = [c for c in state.checkpoints if c.offset <= offset]
        if written:
            kept.append(
                _Checkpoint(offset + written, start.parts + len(new_parts), tail, tail_size)
            )
        updated = _State(state.multipart, seq, state.parts[: start.parts] + new_parts, kept)
        await self._save(upload_id, updated)
        # The tails of the checkpoints this append dropped. The append is done: a failure
        # here only leaves a tail for publish or abort to remove with the rest.
        dropped = [c.tail for c in state.checkpoints if c.offset > offset and c.tail is not None]
        with contextlib.suppress(Exception):
            await _run_all([partial(self._delete, folder + t) for t in dropped], CONCURRENCY)
        return written

    async def _read_tail(self, upload_id: str, checkpoint: _Checkpoint) -> bytes:
        assert checkpoint.tail is not None
        tail = await self._get_bytes(self._upload(upload_id) + checkpoint.tail)
        if tail is None or len(tail) != checkpoint.tail_size:
            raise NotFound(upload_id)  # its objects went away under it
        return tail

    async def publish(self, upload_id: str, key: str) -> int:
        target = self._object(key)
        folder = self._upload(upload_id)
        state = await self._load(upload_id)
        size = state.length
        tail = state.current.tail
        if not state.current.parts:
            # Smaller than a part: the tail (if any) is the object.
            if tail is not None:
                await self._copy(folder + tail, target, size)
            else:
                await self._put(target, b"")
        else:
            if not state.publishing:
                # Recorded first, so that no append can change the upload once ``data`` may
                # hold it: a retry can then trust a ``data`` of the right size.
                state.publishing = True
                await self._save(upload_id, state)
                await self._complete(upload_id, state)
            elif await self._head(folder + DATA) != size:
                await self._complete(upload_id, state)
            await self._copy(folder + DATA, target, size)
        # Completed, or there were no parts (a truncating append dropped them all) to abort.
        multiparts = {state.multipart} if state.multipart and not state.current.parts else set()
        await self._delete(folder + STATE)  # from here on, the upload is gone
        # The object is in place: a failure past this point only leaves objects that
        # uploads() lists, for abort() to remove.
        with contextlib.suppress(Exception):
            await self._discard(upload_id, multiparts, sweep=False)
        return size

    async def _complete(self, upload_id: str, state: _State) -> None:
        """Complete the multipart upload onto ``data``, the tail as its last part."""
        folder = self._upload(upload_id)
        current = state.current
        listed = [{"PartNumber": p.number, "ETag": p.etag} for p in state.parts[: current.parts]]
        try:
            if current.tail is not None:
                number = state.parts[current.parts - 1].number + 1
                response = await self._client.upload_part_copy(
                    Bucket=self._bucket,
                    Key=folder + DATA,
                    UploadId=state.multipart,
                    PartNumber=number,
                    CopySource={"Bucket": self._bucket, "Key": folder + current.tail},
                )
                listed.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=folder + DATA,
                UploadId=state.multipart,
                MultipartUpload={"Parts": listed},
            )
        except ClientError as error:
            if _code(error) == "NoSuchUpload":  # aborted meanwhile
                raise NotFound(upload_id) from None
            raise

    async def _copy(self, source: str, target: str, size: int) -> None:
        """Server-side copy of the object ``source`` (of ``size`` bytes) to ``target``."""
        copy_source = {"Bucket": self._bucket, "Key": source}
        if size <= self.copy_limit:
            await self._client.copy_object(Bucket=self._bucket, Key=target, CopySource=copy_source)
            return
        response = await self._client.create_multipart_upload(Bucket=self._bucket, Key=target)
        multipart = str(response["UploadId"])
        step = max(self.copy_part_bytes, -(-size // MAX_PARTS))

        def part(number: int, first: int) -> Callable[[], Awaitable[dict[str, Any]]]:
            async def copy() -> dict[str, Any]:
                last = min(first + step, size) - 1
                response = await self._client.upload_part_copy(
                    Bucket=self._bucket,
                    Key=target,
                    UploadId=multipart,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={first}-{last}",
                )
                return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

            return copy

        try:
            parts = await _run_all(
                [part(n, first) for n, first in enumerate(range(0, size, step), 1)], CONCURRENCY
            )
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=target,
                UploadId=multipart,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._abort_multipart(target, multipart)
            raise

    async def _discard(self, upload_id: str, multiparts: set[str], sweep: bool) -> None:
        """Remove the objects and the ``multiparts`` of an upload whose state is gone (and
        with ``sweep``, any other multipart upload on its ``data``)."""
        folder = self._upload(upload_id)

        async def objects() -> None:
            keys = [str(item["Key"]) async for item in self._list(folder)]
            await _run_all([partial(self._delete, key) for key in keys], CONCURRENCY)

        async def uploads() -> None:
            found = set(multiparts)
            if sweep:  # one an append created and crashed before recording
                paginator = self._client.get_paginator("list_multipart_uploads")
                async for page in paginator.paginate(Bucket=self._bucket, Prefix=folder + DATA):
                    found.update(str(u["UploadId"]) for u in page.get("Uploads", ()))
            await _run_all(
                [partial(self._abort_multipart, folder + DATA, m) for m in found], CONCURRENCY
            )

        await _run_all([objects, uploads], 2)

    async def abort(self, upload_id: str) -> None:
        try:
            state = await self._load(upload_id)
        except NotFound:
            multiparts = set()
        else:
            multiparts = {state.multipart} if state.multipart else set()
        # The state first: from then on the upload is gone, and uploads() lists what a
        # failure leaves, for abort() to remove.
        await self._delete(self._upload(upload_id) + STATE)
        await self._discard(upload_id, multiparts, sweep=True)

    async def uploads(self) -> list[tuple[str, datetime]]:
        states: dict[str, datetime] = {}
        others: dict[str, datetime] = {}
        async for item in self._list(self._uploads):
            upload_id, _, name = str(item["Key"])[len(self._uploads) :].partition("/")
            modified: datetime = item["LastModified"]
            if name == STATE:
                states[upload_id] = modified
            elif upload_id not in others or others[upload_id] < modified:
                others[upload_id] = modified
        return list({**others, **states}.items())
