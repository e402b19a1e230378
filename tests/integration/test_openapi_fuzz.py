"""schemathesis, a client nobody here wrote, fuzzes every operation of the served OpenAPI
document against a real origin process: no 500s, responses as documented, bad requests
refused, requests without valid credentials refused."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from tests.process import OriginProcess

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


async def test_the_admin_api_survives_schemathesis(tmp_path: Path) -> None:
    # The fuzzer sends wrong passwords by design; the throttle would then lock the admin out
    # and leave the operations untested behind 429s (the throttle has its own tests).
    origin = OriginProcess(
        tmp_path / "data",
        tmp_path / "origin.log",
        env={
            "WHARF_ORIGIN_LOGIN_FAILURES_PER_ACCOUNT": "1000000",
            "WHARF_ORIGIN_LOGIN_FAILURES_PER_ADDRESS": "1000000",
            "WHARF_ORIGIN_FEED_MAX_WAIT_SECONDS": "0.2",  # long polls: not what is fuzzed
        },
    )
    await origin.start()
    try:
        password = (origin.data_dir / "admin-password").read_text().strip()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{origin.url}/api/v1/openapi.json") as r,
        ):
            paths = (await r.json())["paths"]
        operations = sum(len(item) for item in paths.values())
        proc = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "run",
            f"{origin.url}/api/v1/openapi.json",
            "--auth",
            f"admin:{password}",
            "--checks",
            "all",
            "--max-examples",
            "10",
            "--workers",
            "1",
            "--seed",
            "20261129",
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
    finally:
        await origin.stop()
    report = out.decode()
    assert proc.returncode == 0, report[-12000:]
    assert f"Tested: {operations}" in report, report[-3000:]  # every operation, none skipped
    assert "Traceback" not in origin.log.read_text()
