"""Webhooks: a receiver the test starts gets HMAC-signed deliveries of pushes and deletions;
one that fails gets retries with backoff; every attempt is in the delivery log."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable

import pytest
from aiohttp import encode_basic_auth, web
from aiohttp.pytest_plugin import AiohttpClient, AiohttpServer

from origin.admin.webhooks import MAX_WEBHOOKS
from origin.app import create_app
from origin.config import OriginConfig
from tests.support import Client, admin_auth, api_call, basic_admin, make_image, push_image, until


@dataclasses.dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], bytes]]
    answers: list[int]  # statuses to answer with, first to last; then 200


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    found = Receiver("", [], [])

    async def hook(request: web.Request) -> web.Response:
        found.received.append((dict(request.headers), await request.read()))
        return web.Response(status=found.answers.pop(0) if found.answers else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    found.url = str(server.make_url("/hook"))
    return found


@pytest.fixture
async def origin_with_hooks(aiohttp_client: AiohttpClient, origin_config: OriginConfig) -> Client:
    # The receiver is on loopback: allowed here, refused by default (see the last test).
    config = dataclasses.replace(
        origin_config, webhooks_private_networks=True, webhook_retry_base_seconds=0.5
    )
    return await aiohttp_client(create_app(config), middlewares=(admin_auth(config.data_dir),))


def signed(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Wharf-Signature-256"], expected)


async def waited(check: Callable[[], bool], seconds: float = 20.0) -> None:
    async def ready() -> bool:
        return check()

    await until(ready, seconds)


async def test_pushes_and_deletions_arrive_signed(
    origin_with_hooks: Client, origin_config: OriginConfig, receiver: Receiver
) -> None:
    client, auth = origin_with_hooks, basic_admin(origin_config.data_dir)
    await api_call(client, "POST", "/organizations", auth, {"name": "team"}, expect=201)
    hook = await api_call(client, "POST", "/namespaces/team/webhooks", auth,
                     {"url": receiver.url, "events": ["push", "tag_delete"]}, expect=201)  # fmt: skip
    secret = hook["secret"]
    image = make_image("hooked")
    await push_image(client, "team/app", "v1", image)
    await push_image(client, "other/app", "v1", make_image("elsewhere"))  # not this namespace
    async with client.delete("/v2/team/app/manifests/v1") as r:
        assert r.status == 202
    await waited(lambda: len(receiver.received) >= 2)
    events = []
    for headers, body in receiver.received:
        assert signed(secret, headers, body)
        payload = json.loads(body)
        assert headers["X-Wharf-Event"] == payload["event"]
        assert headers["X-Wharf-Delivery"] == str(payload["delivery"])
        events.append((payload["event"], payload["repository"], payload["tag"], payload["digest"]))
    assert events == [
        ("push", "team/app", "v1", image.digest),
        ("tag_delete", "team/app", "v1", image.digest),
    ]
    log = await api_call(client, "GET", f"/namespaces/team/webhooks/{hook['id']}/deliveries", auth)
    assert [(d["event"], d["state"], d["attempts"]) for d in log] == [
        ("tag_delete", "delivered", 1), ("push", "delivered", 1),
    ]  # fmt: skip
    # A test delivery, at once.
    ping = await api_call(client, "POST", f"/namespaces/team/webhooks/{hook['id']}/test", auth)
    assert (ping["event"], ping["state"], ping["last_status"]) == ("ping", "delivered", 200)
    assert signed(secret, *receiver.received[-1])


async def test_a_failing_receiver_gets_retries_with_backoff(
    origin_with_hooks: Client, origin_config: OriginConfig, receiver: Receiver
) -> None:
    client, auth = origin_with_hooks, basic_admin(origin_config.data_dir)
    await api_call(client, "POST", "/organizations", auth, {"name": "team"}, expect=201)
    hook = await api_call(client, "POST", "/namespaces/team/webhooks", auth,
                     {"url": receiver.url, "events": ["push"]}, expect=201)  # fmt: skip
    receiver.answers[:] = [500, 503]
    await push_image(client, "team/app", "v1", make_image("retried"))
    await waited(lambda: len(receiver.received) >= 3)  # failed, failed (~0.5 s, ~1 s later), done
    bodies = {body for _, body in receiver.received}
    assert len(bodies) == 1  # the same delivery each time
    path = f"/namespaces/team/webhooks/{hook['id']}/deliveries"

    async def settled() -> bool:
        (delivery,) = await api_call(client, "GET", path, auth)
        return bool(delivery["state"] == "delivered")

    await until(settled, 10)
    (delivery,) = await api_call(client, "GET", path, auth)
    assert (delivery["attempts"], delivery["last_status"]) == (3, 200)


async def test_hooks_reach_no_private_address_by_default_and_only_managers_add_them(
    origin: Client, origin_config: OriginConfig, receiver: Receiver
) -> None:
    auth = basic_admin(origin_config.data_dir)
    await api_call(origin, "POST", "/organizations", auth, {"name": "team"}, expect=201)
    for bad in ("ftp://example.com/x", "http://user:pw@example.com/x"):
        await api_call(origin, "POST", "/namespaces/team/webhooks", auth,
                  {"url": bad, "events": ["push"]}, expect=400)  # fmt: skip
    await api_call(origin, "POST", "/namespaces/team/webhooks", auth,
              {"url": receiver.url, "events": ["nope"]}, expect=400)  # fmt: skip
    hook = await api_call(origin, "POST", "/namespaces/team/webhooks", auth,
                     {"url": receiver.url, "events": ["push"]}, expect=201)  # fmt: skip
    ping = await api_call(origin, "POST", f"/namespaces/team/webhooks/{hook['id']}/test", auth)
    assert ping["state"] == "pending"  # to be retried, and refused again
    assert "not a public address" in ping["last_error"]
    # A name is checked where the connection is made, whatever it resolved to before.
    by_name = receiver.url.replace("127.0.0.1", "localhost")
    named = await api_call(origin, "POST", "/namespaces/team/webhooks", auth,
                      {"url": by_name, "events": ["push"]}, expect=201)  # fmt: skip
    ping = await api_call(origin, "POST", f"/namespaces/team/webhooks/{named['id']}/test", auth)
    assert ping["last_error"] == "not a public address"
    assert receiver.received == []
    await api_call(origin, "POST", "/users", auth, {"name": "eve", "password": "eves-password"},
              expect=201)  # fmt: skip
    eve = {"Authorization": encode_basic_auth("eve", "eves-password")}
    await api_call(origin, "POST", "/namespaces/team/webhooks", eve,
              {"url": receiver.url, "events": ["push"]}, expect=403)  # fmt: skip
    await api_call(origin, "GET", "/namespaces/team/webhooks", eve, expect=403)
    listed = await api_call(origin, "GET", "/namespaces/team/webhooks", auth)
    assert "secret" not in listed[0]  # shown once, at creation


async def test_a_namespace_has_at_most_twenty_hooks(
    origin: Client, origin_config: OriginConfig
) -> None:
    auth = basic_admin(origin_config.data_dir)
    await api_call(origin, "POST", "/organizations", auth, {"name": "team"}, expect=201)
    for i in range(MAX_WEBHOOKS):
        await api_call(origin, "POST", "/namespaces/team/webhooks", auth,
                  {"url": f"https://example.com/{i}", "events": ["push"]}, expect=201)  # fmt: skip
    refused = await api_call(origin, "POST", "/namespaces/team/webhooks", auth,
                        {"url": "https://example.com/x", "events": ["push"]}, expect=403)  # fmt: skip
    assert refused["errors"][0]["message"] == (
        "team has 20 webhooks, the most a namespace may have: remove one first"
    )
    assert len(await api_call(origin, "GET", "/namespaces/team/webhooks", auth)) == MAX_WEBHOOKS
