"""Namespace quotas: usage is the distinct blobs a namespace's repositories hold; a push that
would pass the quota is refused with a clear error and stores nothing visible."""

from __future__ import annotations

import io
import os

from aiohttp import encode_basic_auth

from origin.config import OriginConfig
from tests.support import Client, api_call, basic_admin, error_code, push_blob, sha256


async def test_a_push_past_the_quota_is_refused_and_changes_nothing(
    origin: Client, origin_config: OriginConfig
) -> None:
    auth = basic_admin(origin_config.data_dir)
    await api_call(origin, "POST", "/organizations", auth, {"name": "team"}, expect=201)
    quota = await api_call(origin, "PUT", "/namespaces/team/quota", auth, {"quota_bytes": 10_000})
    assert quota == {"namespace": "team", "quota_bytes": 10_000, "used_bytes": 0}
    first, second = os.urandom(6000), os.urandom(6000)
    await push_blob(origin, "team/app", first)
    async with origin.post(
        f"/v2/team/app/blobs/uploads/?digest={sha256(second)}", data=io.BytesIO(second)
    ) as r:
        assert r.status == 403
        (error,) = (await r.json())["errors"]
        assert error["code"] == "DENIED"
        assert error["message"] == "namespace team is over its quota (6000 of 10000 bytes used)"
    async with origin.head(f"/v2/team/app/blobs/{sha256(second)}") as r:
        assert r.status == 404
    # A blob the namespace holds already costs nothing more, in another of its repositories.
    await push_blob(origin, "team/other", first)
    got = await api_call(origin, "GET", "/namespaces/team/quota", auth)
    assert got["used_bytes"] == 6000
    # Full: even opening an upload is refused; other namespaces are not concerned.
    await api_call(origin, "PUT", "/namespaces/team/quota", auth, {"quota_bytes": 6000})
    async with origin.post("/v2/team/app/blobs/uploads/") as r:
        assert r.status == 403
        assert await error_code(r) == "DENIED"
    await push_blob(origin, "elsewhere/app", second)
    await api_call(origin, "PUT", "/namespaces/team/quota", auth, {"quota_bytes": None})
    await push_blob(origin, "team/app", second)


async def test_managers_read_their_quota_and_only_system_admins_set_it(
    origin: Client, origin_config: OriginConfig
) -> None:
    auth = basic_admin(origin_config.data_dir)
    await api_call(origin, "POST", "/users", auth, {"name": "mia", "password": "mias-password"},
              expect=201)  # fmt: skip
    mia = {"Authorization": encode_basic_auth("mia", "mias-password")}
    assert (await api_call(origin, "GET", "/namespaces/mia/quota", mia))["quota_bytes"] is None
    await api_call(
        origin, "PUT", "/namespaces/mia/quota", mia, {"quota_bytes": 1 << 40}, expect=403
    )
    await api_call(origin, "GET", "/namespaces/admin/quota", mia, expect=403)
    await api_call(origin, "PUT", "/namespaces/mia/quota", auth, {"quota_bytes": -1}, expect=400)
