from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import free_port


@pytest.fixture
def podman_storage() -> Iterator[Path]:
    """Podman's storage, all of it in a temporary folder (its runroot must be short)."""
    folder = Path(tempfile.mkdtemp(prefix="wharf-podman-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def distribution(tmp_path: Path) -> AsyncIterator[str]:
    """CNCF Distribution (Debian's docker-registry) on a loopback port."""
    port = free_port()
    config = tmp_path / "distribution.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'distribution'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is installed by `make test`"
    proc = await asyncio.create_subprocess_exec(
        binary,
        "serve",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{url}/v2/") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    yield url.removeprefix("http://")
    proc.terminate()
    await proc.wait()
