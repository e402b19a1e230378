"""The Consul double, driven only through the real py-consul asyncio client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from consul import Check, NotFound
from consul.aio import Consul

from tests.consul_double import ConsulDouble, parse_duration

TTL_PASSING = {"ttl": "60s", "Status": "passing"}


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    async with ConsulDouble(
        ("node-a", "node-b"),
        reap_interval=0.05,
        min_deregister=0.0,
        min_check_interval=0.05,
        session_time_scale=0.01,
    ) as double:
        yield double


@pytest.fixture
async def client(consul: ConsulDouble) -> AsyncIterator[Any]:
    c = Consul(host=consul.host, port=consul.port)
    yield c
    await c.close()


@pytest.fixture
async def client_b(consul: ConsulDouble) -> AsyncIterator[Any]:
    c = Consul(host=consul.host, port=consul.port_of("node-b"))
    yield c
    await c.close()


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def statuses(client: Any, name: str) -> dict[str, str]:
    """Service ID -> status of its own check (the first non-serf check)."""
    _, rows = await client.health.service(name)
    return {
        r["Service"]["ID"]: next(c["Status"] for c in r["Checks"] if c["CheckID"] != "serfHealth")
        for r in rows
    }


async def passing_ids(client: Any, name: str) -> list[str]:
    _, rows = await client.health.service(name, passing=True)
    return [r["Service"]["ID"] for r in rows]


def test_go_durations() -> None:
    assert parse_duration("10s") == 10
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("1.5h") == 5400
    assert parse_duration(2_000_000_000) == 2
    for bad in ("10", "s", "1x", ""):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


async def test_register_and_deregister(consul: ConsulDouble, client: Any) -> None:
    assert await client.agent.service.register(
        "web",
        service_id="web-1",
        port=8080,
        tags=["v1"],
        meta={"zone": "z1"},
        check=Check.ttl("60s"),
    )
    index, rows = await client.health.service("web")
    assert isinstance(index, str)
    (row,) = rows
    assert row["Node"]["Node"] == "node-a"
    assert row["Node"]["Address"] == consul.host
    assert row["Node"]["Datacenter"] == "dc1"
    service = row["Service"]
    assert (service["ID"], service["Service"], service["Port"]) == ("web-1", "web", 8080)
    assert (service["Tags"], service["Meta"]) == (["v1"], {"zone": "z1"})
    assert service["Address"] == ""  # Consul leaves it empty: the client uses the node's
    checks = {c["CheckID"]: c["Status"] for c in row["Checks"]}
    assert checks == {"serfHealth": "passing", "service:web-1": "critical"}
    assert (await client.agent.services())["web-1"]["Port"] == 8080

    assert await client.agent.service.deregister("web-1")
    assert (await client.health.service("web"))[1] == []
    assert not await client.agent.service.deregister("web-1")  # 404: unknown service ID


async def test_reregister_updates_and_keeps_check_state(client: Any) -> None:
    await client.agent.service.register("web", service_id="web-1", port=1, check=Check.ttl("60s"))
    assert await client.agent.check.ttl_pass("service:web-1")
    await client.agent.service.register(
        "web", service_id="web-1", address="10.0.0.9", port=2, tags=["new"], check=Check.ttl("60s")
    )
    _, rows = await client.health.service("web")
    (row,) = rows
    assert (row["Service"]["Address"], row["Service"]["Port"], row["Service"]["Tags"]) == (
        "10.0.0.9",
        2,
        ["new"],
    )
    assert await statuses(client, "web") == {"web-1": "passing"}

    # several checks: numbered IDs, an explicit Status; replace-existing-checks drops the old one
    await client.agent.service.register(
        "web",
        service_id="web-1",
        check={"ttl": "60s", "Status": "passing"},
        extra_checks=[{"ttl": "60s", "status": "warning"}],
        replace_existing_checks=True,
    )
    _, rows = await client.health.service("web")
    checks = {c["CheckID"]: c["Status"] for c in rows[0]["Checks"]}
    assert checks == {
        "serfHealth": "passing",
        "service:web-1:1": "passing",
        "service:web-1:2": "warning",
    }
    assert not await client.agent.check.ttl_pass("service:nope")  # 404: unknown check


async def test_ttl_check_transitions(client: Any) -> None:
    await client.agent.service.register("web", service_id="web-1", check=Check.ttl("300ms"))
    assert await statuses(client, "web") == {"web-1": "critical"}
    await client.agent.check.ttl_pass("service:web-1", notes="ok")
    assert await passing_ids(client, "web") == ["web-1"]
    await client.agent.check.ttl_warn("service:web-1")
    assert await statuses(client, "web") == {"web-1": "warning"}
    assert await passing_ids(client, "web") == []  # warning is not passing
    await client.agent.check.ttl_pass("service:web-1")

    started = time.monotonic()

    async def lapsed() -> bool:
        return await statuses(client, "web") == {"web-1": "critical"}

    await eventually(lapsed)
    assert 0.25 < time.monotonic() - started < 1.0
    _, rows = await client.health.service("web")
    assert rows[0]["Checks"][-1]["Output"] == "TTL expired"
    await client.agent.check.ttl_pass("service:web-1")
    await client.agent.check.ttl_fail("service:web-1")
    assert await statuses(client, "web") == {"web-1": "critical"}


async def test_http_check_polls_readiness(client: Any) -> None:
    answer = {"status": 200, "delay": 0.0}

    async def ready(request: web.Request) -> web.Response:
        await asyncio.sleep(answer["delay"])
        return web.Response(status=int(answer["status"]), text="state")

    app = web.Application()
    app.router.add_get("/ready", ready)
    async with TestServer(app) as server:
        url = str(server.make_url("/ready"))
        check = Check.http(url, "50ms", timeout="100ms")
        await client.agent.service.register("edge", service_id="edge-1", check=check)
        assert await statuses(client, "edge") == {"edge-1": "critical"}  # until the first poll
        for status, expected in (
            (200, "passing"),
            (503, "critical"),
            (429, "warning"),
            (204, "passing"),
        ):
            answer["status"] = status

            async def reached(expected: str = expected) -> bool:
                return await statuses(client, "edge") == {"edge-1": expected}

            await eventually(reached)
        _, rows = await client.health.service("edge")
        assert "204" in rows[0]["Checks"][-1]["Output"]
        answer["delay"] = 0.5  # slower than the check's Timeout

        async def timed_out() -> bool:
            return await statuses(client, "edge") == {"edge-1": "critical"}

        await eventually(timed_out)
        answer["delay"] = 0.0
        await client.agent.service.deregister("edge-1")


async def test_blocking_query_returns_on_change(client: Any) -> None:
    await client.agent.service.register("web", service_id="web-1", check=TTL_PASSING)
    started = time.monotonic()
    index, _ = await client.health.service("web")  # no index: at once
    assert time.monotonic() - started < 0.5
    waiter = asyncio.create_task(client.health.service("web", index=index, wait="5s"))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await client.agent.service.register("other", service_id="other-1")  # another name
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await client.agent.service.register("web", service_id="web-2", check=TTL_PASSING)
    new_index, rows = await asyncio.wait_for(waiter, 1.0)
    assert int(new_index) > int(index)
    assert sorted(r["Service"]["ID"] for r in rows) == ["web-1", "web-2"]


async def test_blocking_query_times_out_with_same_index(client: Any) -> None:
    await client.agent.service.register("web", service_id="web-1", check=TTL_PASSING)
    index, rows = await client.health.service("web")
    started = time.monotonic()
    again, same = await client.health.service("web", index=index, wait="200ms")
    assert 0.2 <= time.monotonic() - started < 0.6
    assert (again, same) == (index, rows)


async def test_passing_filter_applies_after_the_wait(client: Any) -> None:
    await client.agent.service.register("web", service_id="web-1", check=TTL_PASSING)
    index, rows = await client.health.service("web", passing=True)
    waiter = asyncio.create_task(client.health.service("web", passing=True, index=index, wait="5s"))
    await asyncio.sleep(0.05)
    await client.agent.service.register("web", service_id="web-2", check=Check.ttl("60s"))
    new_index, new_rows = await asyncio.wait_for(waiter, 1.0)
    assert int(new_index) > int(index)  # woken by a change that the filter hides
    assert [r["Service"]["ID"] for r in new_rows] == [r["Service"]["ID"] for r in rows] == ["web-1"]


async def test_spurious_wakeups_and_index_jumps(consul: ConsulDouble, client: Any) -> None:
    await client.agent.service.register("web", service_id="web-1", check=TTL_PASSING)
    index, _ = await client.health.service("web")
    waiter = asyncio.create_task(client.health.service("web", index=index, wait="5s"))
    await asyncio.sleep(0.05)
    consul.wake_blocked()
    assert (await asyncio.wait_for(waiter, 1.0))[0] == index  # woke up, nothing changed

    waiter = asyncio.create_task(client.health.service("web", index=index, wait="5s"))
    await asyncio.sleep(0.05)
    consul.jump_index(1000)
    jumped, _ = await asyncio.wait_for(waiter, 1.0)
    assert int(jumped) >= int(index) + 1000

    waiter = asyncio.create_task(client.health.service("web", index=jumped, wait="5s"))
    await asyncio.sleep(0.05)
    consul.jump_index(-10_000)  # a snapshot restore: blocked queries return, index backwards
    back, rows = await asyncio.wait_for(waiter, 1.0)
    assert int(back) < int(jumped)
    assert [r["Service"]["ID"] for r in rows] == ["web-1"]


async def test_deregister_critical_service_after(client: Any) -> None:
    dead = Check.http("http://127.0.0.1:9/ready", "50ms", deregister="200ms")
    await client.agent.service.register("edge", service_id="edge-dead", check=dead)
    healthy = {"ttl": "60s", "Status": "passing", "DeregisterCriticalServiceAfter": "200ms"}
    await client.agent.service.register("edge", service_id="edge-ok", check=healthy)
    started = time.monotonic()

    async def reaped() -> bool:
        return list(await statuses(client, "edge")) == ["edge-ok"]

    await eventually(reaped)
    assert 0.2 < time.monotonic() - started < 1.5


async def test_deregister_critical_keeps_consuls_one_minute_floor() -> None:
    async with (
        ConsulDouble(reap_interval=0.02) as double,
        Consul(host=double.host, port=double.port) as client,
    ):
        check = {"ttl": "10ms", "DeregisterCriticalServiceAfter": "10ms"}
        await client.agent.service.register("edge", service_id="edge-1", check=check)
        await asyncio.sleep(0.3)
        assert await statuses(client, "edge") == {"edge-1": "critical"}


async def test_node_failure_takes_its_services_out_of_passing(
    consul: ConsulDouble, client: Any, client_b: Any
) -> None:
    await client.agent.service.register("edge", service_id="edge", check=TTL_PASSING)
    await client_b.agent.service.register("edge", service_id="edge", check=TTL_PASSING)
    _, rows = await client.health.service("edge", passing=True)
    assert sorted(r["Node"]["Node"] for r in rows) == ["node-a", "node-b"]

    index, _ = await client.health.service("edge", passing=True)
    waiter = asyncio.create_task(
        client.health.service("edge", passing=True, index=index, wait="5s")
    )
    await asyncio.sleep(0.05)
    await consul.fail_node("node-b")
    _, rows = await asyncio.wait_for(waiter, 1.0)
    assert [r["Node"]["Node"] for r in rows] == ["node-a"]
    _, everything = await client.health.service("edge")  # still listed, serfHealth critical
    serf = {
        r["Node"]["Node"]: next(c["Status"] for c in r["Checks"] if c["CheckID"] == "serfHealth")
        for r in everything
    }
    assert serf == {"node-a": "passing", "node-b": "critical"}
    with pytest.raises(aiohttp.ClientConnectionError):
        await client_b.agent.services()  # the node's agent is gone

    await consul.restore_node("node-b")
    _, rows = await client.health.service("edge", passing=True)
    assert sorted(r["Node"]["Node"] for r in rows) == ["node-a", "node-b"]


async def test_consul_going_down_and_coming_back(consul: ConsulDouble, client: Any) -> None:
    await client.agent.service.register("web", service_id="web-1", check=TTL_PASSING)
    index, _ = await client.health.service("web")
    port = consul.port
    waiter = asyncio.create_task(client.health.service("web", index=index, wait="5s"))
    await asyncio.sleep(0.05)
    await consul.stop()
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(waiter, 1.0)  # the blocking query is cut off
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.health.service("web")

    await consul.start()
    assert consul.port == port
    assert await passing_ids(client, "web") == ["web-1"]  # state kept

    await consul.restart(keep_state=False)
    assert consul.port == port
    after, rows = await client.health.service("web", index=index, wait="100ms")
    assert rows == []
    assert int(after) < int(index)  # a fresh Consul: the index went backwards


async def test_kv_cas_acquire_release(client: Any) -> None:
    index, missing = await client.kv.get("wharf/leader")
    assert missing is None
    assert isinstance(index, str)
    assert await client.kv.put("wharf/config", b"one")
    _, entry = await client.kv.get("wharf/config")
    assert entry["Value"] == b"one"
    assert not await client.kv.put("wharf/config", "two", cas=0)  # create only
    assert not await client.kv.put("wharf/config", "two", cas=entry["ModifyIndex"] + 1000)
    assert await client.kv.put("wharf/config", "two", cas=entry["ModifyIndex"])
    _, keys = await client.kv.get("wharf/", keys=True)
    assert keys == ["wharf/config"]
    _, many = await client.kv.get("wharf/", recurse=True)
    assert [(e["Key"], e["Value"]) for e in many] == [("wharf/config", b"two")]

    one = await client.session.create(name="one", lock_delay=0)
    two = await client.session.create(name="two", lock_delay=0)
    assert await client.kv.put("wharf/leader", "node-a", acquire=one)
    assert await client.kv.put("wharf/leader", "node-a again", acquire=one)  # already ours
    assert not await client.kv.put("wharf/leader", "node-b", acquire=two)
    assert not await client.kv.put("wharf/leader", "", release=two)
    _, entry = await client.kv.get("wharf/leader")
    assert (entry["Session"], entry["LockIndex"], entry["Value"]) == (one, 1, b"node-a again")
    assert await client.kv.put("wharf/leader", "free", release=one)
    assert await client.kv.put("wharf/leader", "node-b", acquire=two)
    _, entry = await client.kv.get("wharf/leader")
    assert (entry["Session"], entry["LockIndex"]) == (two, 2)

    index, _ = await client.kv.get("wharf/leader")
    waiter = asyncio.create_task(client.kv.get("wharf/leader", index=index, wait="5s"))
    await asyncio.sleep(0.05)
    assert await client.kv.delete("wharf/leader")
    new_index, gone = await asyncio.wait_for(waiter, 1.0)
    assert gone is None
    assert int(new_index) > int(index)


async def test_session_renew_destroy_and_ttl(client: Any) -> None:
    # TTL 10 s, scaled by 0.01: invalidated 2 x 0.1 s after the last renewal, as Consul does
    sid = await client.session.create(ttl=10, lock_delay=0)
    for _ in range(4):
        await asyncio.sleep(0.1)
        renewed = await client.session.renew(sid)
        assert renewed["ID"] == sid
    assert await client.kv.put("lock", "me", acquire=sid)
    _, info = await client.session.info(sid)
    assert (info["ID"], info["Node"], info["TTL"]) == (sid, "node-a", "10s")
    await asyncio.sleep(0.3)
    with pytest.raises(NotFound):
        await client.session.renew(sid)  # gone: step down
    assert (await client.session.info(sid))[1] is None
    _, entry = await client.kv.get("lock")
    assert "Session" not in entry  # behavior=release: released, the key stays

    doomed = await client.session.create(behavior="delete", lock_delay=0)
    assert await client.kv.put("ephemeral", "x", acquire=doomed)
    assert await client.session.destroy(doomed)
    assert (await client.kv.get("ephemeral"))[1] is None
    with pytest.raises(NotFound):
        await client.session.renew(doomed)


async def test_lock_delay_after_invalidation(consul: ConsulDouble, client: Any) -> None:
    holder = await client.session.create()  # default 15 s lock delay, scaled to 0.15 s
    assert await client.kv.put("lock", "a", acquire=holder)
    await consul.fail_node("node-a")  # serfHealth critical invalidates the node's sessions
    await consul.restore_node("node-a")
    with pytest.raises(NotFound):
        await client.session.renew(holder)
    other = await client.session.create(lock_delay=0)
    assert not await client.kv.put("lock", "b", acquire=other)  # still in the lock delay
    await asyncio.sleep(0.2)
    assert await client.kv.put("lock", "b", acquire=other)
