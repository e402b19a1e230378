from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.pytest_plugin import AiohttpClient

from origin.app import create_app
from origin.config import OriginConfig
from tests.support import Client


@pytest.fixture
def origin_config(tmp_path: Path) -> OriginConfig:
    return OriginConfig(listen="127.0.0.1:0", data_dir=tmp_path / "origin")


@pytest.fixture
async def origin(aiohttp_client: AiohttpClient, origin_config: OriginConfig) -> Client:
    """A live origin on a loopback port, and a client for it."""
    return await aiohttp_client(create_app(origin_config))
