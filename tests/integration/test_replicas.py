"""Two origin replicas behind no load balancer at all, sharing PostgreSQL and S3 (moto): a
client may land on either for any request, and the singleton workers run on one at a time."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.postgres import PostgresServer
from tests.replicas import Replicas, leading
from tests.storage.moto import MotoServer
from tests.support import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, sha256

MiB = 1 << 20
pytestmark = pytest.mark.fault  # real processes, killed on purpose


@pytest.fixture
async def replicas(
    tmp_path: Path, postgres: PostgresServer, moto_server: MotoServer
) -> AsyncIterator[Replicas]:
    bucket = await moto_server.new_bucket()
    group = Replicas(
        tmp_path,
        await postgres.new_database(),
        [moto_server.location("shared", bucket, part_bytes=5 * MiB)],
        {
            "leader_poll_seconds": 0.5,
            "cache_ttl_seconds": 0.2,
            "argon2_time_cost": 1,
            "argon2_memory_kib": 1024,
        },
    )
    await group.start(2)
    yield group
    await group.stop()


async def token(http: aiohttp.ClientSession, url: str, admin: str, repository: str) -> str:
    async with http.get(
        f"{url}/auth/token",
        params={"service": "wharf", "scope": f"repository:{repository}:pull,push,delete"},
        headers={"Authorization": admin},
    ) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["token"])


async def test_a_chunked_upload_alternating_between_replicas_completes(
    replicas: Replicas,
) -> None:
    a, b = replicas.processes
    data = os.urandom(16 * MiB + 12345)
    chunks = [data[: 6 * MiB], data[6 * MiB : 9 * MiB], data[9 * MiB : 16 * MiB], data[16 * MiB :]]
    async with aiohttp.ClientSession() as http:
        # A token from one replica is honoured by the other: the signing keys are shared.
        bearer = {
            "Authorization": f"Bearer {await token(http, a.url, replicas.admin(), 'team/app')}"
        }
        async with http.post(f"{b.url}/v2/team/app/blobs/uploads/", headers=bearer) as r:
            assert r.status == 202, await r.text()
            location = r.headers["Location"]
        offset = 0
        for index, chunk in enumerate(chunks):
            replica = (a, b)[index % 2]  # A, B, A, B
            headers = {
                **bearer,
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Type": "application/octet-stream",
            }
            async with http.patch(
                f"{replica.url}{location}", data=io.BytesIO(chunk), headers=headers
            ) as r:
                assert r.status == 202, await r.text()
                location = r.headers["Location"]
                assert r.headers["Range"] == f"0-{offset + len(chunk) - 1}"
            offset += len(chunk)
        # The status of the session is the same whoever is asked.
        for replica in (a, b):
            async with http.get(f"{replica.url}{location}", headers=bearer) as r:
                assert r.status == 204
                assert r.headers["Range"] == f"0-{len(data) - 1}"
        digest = sha256(data)
        async with http.put(f"{b.url}{location}", params={"digest": digest}, headers=bearer) as r:
            assert r.status == 201, await r.text()
        for replica in (a, b):
            async with http.get(f"{replica.url}/v2/team/app/blobs/{digest}", headers=bearer) as r:
                assert r.status == 200
                assert hashlib.sha256(await r.read()).hexdigest() == digest.split(":")[1]
            headers = {**bearer, "Range": "bytes=6291455-6291460"}  # across a part boundary
            async with http.get(f"{replica.url}/v2/team/app/blobs/{digest}", headers=headers) as r:
                assert r.status == 206
                assert await r.read() == data[6 * MiB - 1 : 6 * MiB + 5]


async def test_concurrent_pushes_of_one_tag_leave_one_winner_both_replicas_agree_on(
    replicas: Replicas,
) -> None:
    a, b = replicas.processes
    layer = os.urandom(4096)
    manifests = []
    for n in range(20):
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode()
        manifests.append(
            (
                config,
                json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": OCI_MANIFEST,
                        "config": descriptor(OCI_CONFIG, config),
                        "layers": [descriptor(OCI_LAYER, layer)],
                    }
                ).encode(),
            )
        )
    async with aiohttp.ClientSession() as http:
        bearer = {
            "Authorization": f"Bearer {await token(http, a.url, replicas.admin(), 'team/app')}"
        }

        async def blob(url: str, body: bytes) -> None:
            async with http.post(
                f"{url}/v2/team/app/blobs/uploads/", params={"digest": sha256(body)},
                data=body, headers=bearer,
            ) as r:  # fmt: skip
                assert r.status == 201, await r.text()

        # The same blob through both replicas at once, then each manifest's config.
        await asyncio.gather(*(blob(url, layer) for url in (a.url, b.url, a.url, b.url)))
        for index, (config, _) in enumerate(manifests):
            await blob((a, b)[index % 2].url, config)

        async def put(url: str, body: bytes) -> None:
            async with http.put(
                f"{url}/v2/team/app/manifests/latest",
                data=body,
                headers={**bearer, "Content-Type": OCI_MANIFEST},
            ) as r:
                assert r.status == 201, await r.text()

        await asyncio.gather(
            *(put((a, b)[index % 2].url, body) for index, (_, body) in enumerate(manifests))
        )
        await asyncio.sleep(0.5)  # past each replica's read cache (cache_ttl_seconds)
        answers = set()
        for replica in (a, b):
            async with http.get(
                f"{replica.url}/v2/team/app/manifests/latest",
                headers={**bearer, "Accept": OCI_MANIFEST},
            ) as r:
                assert r.status == 200
                answers.add(r.headers["Docker-Content-Digest"])
                assert sha256(await r.read()) == r.headers["Docker-Content-Digest"]
        assert len(answers) == 1
        (winner,) = answers
        assert winner in {sha256(body) for _, body in manifests}
        # The event feed's last word on the tag is the winner too: one history, not two.
        async with http.post(
            f"{a.url}/api/v1/replication/rules",
            json={"repositories": "*", "regions": ["elsewhere"]},
            headers={"Authorization": replicas.admin()},
        ) as r:
            assert r.status == 201, await r.text()
        async with http.get(
            f"{b.url}/api/v1/replication/events",
            params={"region": "elsewhere", "limit": "1000"},
            headers={"Authorization": replicas.admin()},
        ) as r:
            assert r.status == 200, await r.text()
            events = (await r.json())["events"]
        tagged = [e for e in events if e.get("tag") == "latest"]
        assert len(tagged) == len(manifests)
        assert tagged[-1]["digest"] == winner


async def test_killing_the_leader_hands_the_singleton_workers_to_the_other(
    replicas: Replicas,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(found := await leading(replicas.processes)) != 1:
        assert loop.time() < deadline, "no single leader"
        await asyncio.sleep(0.1)
    (leader,) = found
    (other,) = [p for p in replicas.processes if p is not leader]
    await leader.kill()
    killed = time.monotonic()
    while await leading([other]) != [other]:
        assert time.monotonic() - killed < 10, "the survivor did not take over"
        await asyncio.sleep(0.1)
    handover = time.monotonic() - killed
    assert handover < 10  # "within seconds"
    print(f"leader handover: {handover:.2f} s")  # shown with -s; about leader_poll_seconds
    # The survivor serves on, with its reaper, rotation and copier running.
    async with aiohttp.ClientSession() as http, http.get(f"{other.url}/readyz") as r:
        assert r.status == 200


async def test_failed_logins_count_on_every_replica(replicas: Replicas) -> None:
    a, b = replicas.processes
    wrong = aiohttp.encode_basic_auth("admin", "not-the-password")
    async with aiohttp.ClientSession() as http:
        for attempt in range(10):  # login_failures_per_account, spread over both
            url = (a, b)[attempt % 2].url
            async with http.get(f"{url}/auth/token", params={"service": "wharf"},
                                headers={"Authorization": wrong}) as r:  # fmt: skip
                assert r.status == 401
        for replica in (a, b):
            async with http.get(
                f"{replica.url}/auth/token",
                params={"service": "wharf"},
                headers={"Authorization": replicas.admin()},
            ) as r:
                assert r.status == 429  # even the right password, on either replica


async def test_two_bodies_for_one_upload_on_two_replicas_never_mix(replicas: Replicas) -> None:
    """A client (or a load balancer retrying) sends two different chunks for the same offset
    of one session, to both replicas at once: one is taken, the other refused, and the blob
    is exactly the chunk that was taken (not the one whose bytes landed last)."""
    a, b = replicas.processes
    first, second = os.urandom(8 * MiB), os.urandom(8 * MiB)

    async def slowly(data: bytes, pause: float) -> AsyncIterator[bytes]:
        for start in range(0, len(data), MiB):
            yield data[start : start + MiB]
            await asyncio.sleep(pause)

    async with aiohttp.ClientSession() as http:
        bearer = {
            "Authorization": f"Bearer {await token(http, a.url, replicas.admin(), 'team/app')}"
        }
        async with http.post(f"{a.url}/v2/team/app/blobs/uploads/", headers=bearer) as r:
            location = r.headers["Location"]
        headers = {**bearer, "Content-Range": f"0-{8 * MiB - 1}", "Content-Length": str(8 * MiB)}

        async def patch(url: str, body: AsyncIterator[bytes], delay: float) -> int:
            await asyncio.sleep(delay)
            try:
                async with http.patch(f"{url}{location}", data=body, headers=headers) as r:
                    return r.status
            except aiohttp.ClientError:
                return 0  # refused before the body was read: the connection was cut

        # The first body arrives quickly at A; the second starts later at B and ends later.
        statuses = await asyncio.gather(
            patch(a.url, slowly(first, 0.05), 0), patch(b.url, slowly(second, 0.2), 0.1)
        )
        assert statuses[0] == 202
        assert statuses[1] in (0, 416)
        digest = sha256(first)
        async with http.put(f"{a.url}{location}", params={"digest": digest}, headers=bearer) as r:
            assert r.status == 201, await r.text()
        async with http.get(f"{b.url}/v2/team/app/blobs/{digest}", headers=bearer) as r:
            assert hashlib.sha256(await r.read()).hexdigest() == digest[7:]
