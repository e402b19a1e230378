"""Driving the clients we did not write (skopeo, podman) from the tests."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from tests.process import OriginProcess


async def attempt(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a client; its exit status and everything it printed."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def run(*argv: str, env: dict[str, str] | None = None) -> str:
    code, out = await attempt(*argv, env=env)
    assert code == 0, f"{argv} failed:\n{out}"
    return out


def layers() -> list[dict[str, bytes]]:
    return [
        {"etc/wharf/random.bin": os.urandom(2 << 20)},
        {"usr/share/doc/readme.txt": b"three layers\n" * 100},
        {"opt/app/data.json": json.dumps({"n": list(range(1000))}).encode()},
    ]


def layout_digest(folder: Path) -> str:
    return str(json.loads((folder / "index.json").read_text())["manifests"][0]["digest"])


def creds(origin: OriginProcess) -> str:
    """``admin:<password>`` for the clients' --creds flags (Distribution ignores them)."""
    return "admin:" + (origin.data_dir / "admin-password").read_text().strip()


async def skopeo_copy(src: str, dst: str, credentials: str) -> None:
    await run(
        "skopeo",
        "copy",
        "--insecure-policy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        credentials,
        "--dest-creds",
        credentials,
        src,
        dst,
    )


async def skopeo_inspect(reference: str, credentials: str, *flags: str) -> Any:
    out = await run(
        "skopeo", "inspect", "--tls-verify=false", "--creds", credentials, *flags, reference
    )
    return json.loads(out)


PODMAN_STORAGE = (
    "--storage-driver",
    "vfs",
    "--events-backend",
    "file",
    "--cgroup-manager",
    "cgroupfs",
)


def podman(storage: Path, *argv: str) -> list[str]:
    return [
        "podman",
        "--root",
        str(storage / "root"),
        "--runroot",
        str(storage / "run"),
        "--tmpdir",
        str(storage / "tmp"),
        *PODMAN_STORAGE,
        *argv,
    ]
