from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.pytest_plugin import AiohttpClient
from aiohttp.test_utils import TestServer

from ocicore.web.accesslog import AccessLogger
from origin.app import create_app
from origin.config import OriginConfig
from origin.locations import LocationConfig
from tests.edges import Upstream, start_edge, start_origin
from tests.postgres import PostgresServer
from tests.process import OriginProcess
from tests.storage.moto import MotoServer
from tests.support import Client, admin_auth, basic_admin

# Modules whose tests run against the origin on SQLite and on PostgreSQL: the origin's own
# suite. Edge-centred modules use the origin as a fixture only and run on SQLite.
_ON_BOTH_DATABASES = (
    "test_gc",
    "test_access",
    "test_admin_api",
    "test_audit",
    "test_bad_input",
    "test_blobs",
    "test_edge_pushes",
    "test_enforcement",
    "test_faults",
    "test_ldap_login",
    "test_manifests",
    "test_oidc_login",
    "test_operations",
    "test_quotas",
    "test_replication_feed",
    "test_revocation",
    "test_time_machine",
    "test_webhooks",
    "test_tokens",
    "test_torrents",
)


# Modules about what only PostgreSQL allows (transactions side by side, as replicas run them).
_ON_POSTGRESQL_ONLY = ("test_gc_races",)

# Modules whose tests run with the blobs on the filesystem and on S3 (moto's server).
_ON_BOTH_STORAGES = ("test_blobs",)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "database_kind" in metafunc.fixturenames:
        kinds = ["sqlite"]
        if module in _ON_BOTH_DATABASES:
            kinds = ["sqlite", "postgresql"]
        elif module in _ON_POSTGRESQL_ONLY:
            kinds = ["postgresql"]
        metafunc.parametrize("database_kind", kinds)
    if "storage_kind" in metafunc.fixturenames and module in _ON_BOTH_STORAGES:
        metafunc.parametrize("storage_kind", ["filesystem", "s3"])


@pytest.fixture
def storage_kind() -> str:
    return "filesystem"  # modules not in _ON_BOTH_STORAGES


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_database(
    database_kind: str, request: pytest.FixtureRequest
) -> Callable[[], Awaitable[str]]:
    """The URL of a new empty database of the test's kind ("" for SQLite in the data dir)."""

    async def fresh() -> str:
        if database_kind == "sqlite":
            return ""
        server: PostgresServer = request.getfixturevalue("postgres")
        return await server.new_database()

    return fresh


@pytest.fixture
async def origin_config(
    tmp_path: Path,
    fresh_database: Callable[[], Awaitable[str]],
    storage_kind: str,
    request: pytest.FixtureRequest,
) -> OriginConfig:
    locations: tuple[LocationConfig, ...] = ()
    if storage_kind == "s3":
        moto: MotoServer = request.getfixturevalue("moto_server")
        bucket = await moto.new_bucket()
        locations = (LocationConfig(**moto.location("s3", bucket, part_bytes=5 << 20)),)
    # Cheap password hashing: the tests check behaviour, not argon2's cost.
    return OriginConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "origin",
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        database_url=await fresh_database(),
        locations=locations,
    )


@pytest.fixture
def root(origin_config: OriginConfig) -> dict[str, str]:
    """The admin's Basic credentials for the test's origin's admin API."""
    return basic_admin(origin_config.data_dir)


@pytest.fixture
async def origin(aiohttp_client: AiohttpClient, origin_config: OriginConfig) -> Client:
    """A live origin on a loopback port, and a client for it."""
    server = TestServer(create_app(origin_config))
    # Our access logger, as in production: it also records the HTTP metrics.
    await server.start_server(access_log_class=AccessLogger)
    return await aiohttp_client(server, middlewares=(admin_auth(origin_config.data_dir),))


@pytest.fixture
async def origin_process(tmp_path: Path) -> AsyncIterator[OriginProcess]:
    """The origin as a real child process (``wharf origin serve``) on a loopback port."""
    process = OriginProcess(tmp_path / "data", tmp_path / "origin.log")
    await process.start()
    yield process
    await process.stop()


@pytest.fixture
async def upstream(origin_config: OriginConfig) -> AsyncIterator[Upstream]:
    """An origin in the test's loop that counts its blob GETs and can be told to misbehave:
    the upstream of the edges under test."""
    started = await start_origin(origin_config)
    yield started
    await started.server.close()


REPLICATOR = ("edge-sync", "sync-password-123")  # the edges' account at the origin


@pytest.fixture
async def replicating(origin_config: OriginConfig) -> AsyncIterator[Upstream]:
    """An origin (as ``upstream``) where the account ``edge-sync`` may carry pushes accepted
    at edges, acting for the users who pushed them."""
    started = await start_origin(dataclasses.replace(origin_config, replicators=(REPLICATOR[0],)))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{started.url}/api/v1/users",
            json={"name": REPLICATOR[0], "password": REPLICATOR[1]},
            headers={"Authorization": aiohttp.encode_basic_auth("admin", started.password())},
        ) as r,
    ):
        assert r.status == 201, await r.text()
    yield started
    await started.server.close()


@pytest.fixture
async def pushing_edge(replicating: Upstream, tmp_path: Path) -> AsyncIterator[TestServer]:
    """An edge in front of ``replicating`` that accepts pushes."""
    server = await start_edge(
        replicating,
        tmp_path / "edge",
        replication_username=REPLICATOR[0],
        replication_password=REPLICATOR[1],
        replication_retry_max_seconds=0.5,
    )
    yield server
    await server.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's standalone S3 server, standing in for S3 (none is packaged for Debian)."""
    server = MotoServer()
    server.start()
    yield server
    server.stop()
