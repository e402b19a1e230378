"""A throwaway S3 for the tests: moto's standalone server (``moto[server]``) as a child
process on a free loopback port, killed when the test session ends. Each test gets a bucket
of its own; everything moto holds is dropped after each test (it keeps objects in memory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiobotocore.session import AioSession  # type: ignore[import-untyped]

from ocicore.storage.s3 import S3Config

# moto accepts any credentials; these keep botocore from looking for real ones.
ACCESS_KEY_ID = "testing-access-key"
SECRET_ACCESS_KEY = "testing-secret-key"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, log = tempfile.mkstemp(prefix="wharf-moto-", suffix=".log")
        os.close(fd)
        self.log = Path(log)
        self._proc: subprocess.Popen[bytes] | None = None
        # One botocore session for every client of the tests: loading its models takes a
        # fifth of a second each time.
        self.session = AioSession()

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Objects in memory, not spooled to temporary files past 5 MiB.
                env={**os.environ, "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(256 << 20)},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        output = self.log.read_text()[-4000:]
        self.stop()
        raise RuntimeError(f"moto did not start:\n{output}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None
        self.log.unlink(missing_ok=True)

    def reset(self) -> None:
        """Drop every bucket (moto's own API)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def config(self, bucket: str, **options: Any) -> S3Config:
        return S3Config(
            bucket=bucket,
            endpoint_url=self.url,
            region=REGION,
            access_key_id=ACCESS_KEY_ID,
            secret_access_key=SECRET_ACCESS_KEY,
            **options,
        )

    def location(self, name: str, bucket: str, **options: Any) -> dict[str, Any]:
        """An ``[[origin.locations]]`` table (or LocationConfig's fields) for a bucket here."""
        return {
            "name": name,
            "driver": "s3",
            "bucket": bucket,
            "endpoint_url": self.url,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            **options,
        }

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        """A plain aiobotocore client, to look behind a driver's back."""
        async with self.session.create_client(
            "s3",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        ) as client:
            yield client

    async def new_bucket(self) -> str:
        name = f"wharf-{uuid.uuid4().hex[:16]}"
        async with self.client() as client:
            await client.create_bucket(Bucket=name)
        return name

    async def contents(self, bucket: str) -> tuple[list[str], list[str]]:
        """Every key in the bucket, and the ids of its multipart uploads in progress."""
        async with self.client() as client:
            keys = [
                str(item["Key"])
                async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for item in page.get("Contents", ())
            ]
            multiparts = await client.list_multipart_uploads(Bucket=bucket)
            return sorted(keys), [str(u["UploadId"]) for u in multiparts.get("Uploads", ())]
