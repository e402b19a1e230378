"""The time machine: a tag's history with lifetimes, restoring an earlier state within the
namespace's window, forgetting history early; every restore audited. Immutable tags."""

from __future__ import annotations

from aiohttp import encode_basic_auth

from origin.admin.history import MAX_IMMUTABLE_RULES
from tests.support import (
    OCI_MANIFEST,
    Client,
    api_call,
    make_image,
    push_blob,
    push_image,
    sha256,
)

Auth = dict[str, str]


async def test_push_move_delete_then_restore_the_first_and_pull_it_byte_for_byte(
    origin: Client, root: Auth
) -> None:
    v1, v2 = make_image("v1"), make_image("v2")
    await push_image(origin, "team/app", "release", v1)
    await push_image(origin, "team/app", "release", v2)  # the tag moves to v2
    async with origin.delete("/v2/team/app/manifests/release") as r:
        assert r.status == 202
    async with origin.get("/v2/team/app/manifests/release") as r:
        assert r.status == 404

    history = await api_call(origin, "GET", "/repositories/team/app/-/tags/release/history", root)
    states = history["states"]
    assert [s["digest"] for s in states] == [v2.digest, v1.digest]  # newest first
    assert all(s["ended_at"] is not None and s["restorable"] for s in states)
    assert states[1]["ended_at"] == states[0]["started_at"]  # v1 ended when v2 began

    restored = await api_call(
        origin, "POST", "/repositories/team/app/-/tags/release/restore", root, {"digest": v1.digest}
    )
    assert restored == {
        "repository": "team/app", "tag": "release", "digest": v1.digest, "previous": None,
    }  # fmt: skip
    async with origin.get("/v2/team/app/manifests/release", headers={"Accept": OCI_MANIFEST}) as r:
        assert r.status == 200
        assert await r.read() == v1.manifest
    for blob in v1.blobs:
        async with origin.get(f"/v2/team/app/blobs/{sha256(blob)}") as r:
            assert await r.read() == blob
    history = await api_call(origin, "GET", "/repositories/team/app/-/tags/release/history", root)
    assert [(s["digest"], s["ended_at"] is None) for s in history["states"]] == [
        (v1.digest, True), (v2.digest, False), (v1.digest, False),
    ]  # fmt: skip
    audit = await api_call(origin, "GET", "/audit", root, None)
    (event,) = [e for e in audit["events"] if e["action"] == "tag.restore"]
    assert event["actor"] == "admin"
    assert event["repository"] == "team/app"
    assert event["detail"] == {"tag": "release", "digest": v1.digest, "previous": None}


async def test_the_window_bounds_what_can_be_restored(origin: Client, root: Auth) -> None:
    v1, v2 = make_image("a"), make_image("b")
    await push_image(origin, "team/app", "stable", v1)
    await push_image(origin, "team/app", "stable", v2)
    path = "/repositories/team/app/-/tags/stable/restore"
    await api_call(origin, "POST", "/organizations", root, {"name": "team"}, expect=201)
    window = await api_call(origin, "GET", "/namespaces/team/time-machine", root)
    assert window == {"namespace": "team", "seconds": 14 * 86400}  # the default: two weeks
    too_long = {"seconds": 29 * 86400}
    await api_call(origin, "PUT", "/namespaces/team/time-machine", root, too_long, expect=400)
    await api_call(origin, "PUT", "/namespaces/team/time-machine", root, {"seconds": 0})
    # v1's state ended before the (now empty) window: out of reach, and the tag unchanged.
    await api_call(origin, "POST", path, root, {"digest": v1.digest}, expect=404)
    history = await api_call(origin, "GET", "/repositories/team/app/-/tags/stable/history", root)
    assert [s["restorable"] for s in history["states"]] == [True, False]
    async with origin.get("/v2/team/app/manifests/stable", headers={"Accept": OCI_MANIFEST}) as r:
        assert await r.read() == v2.manifest
    await api_call(origin, "PUT", "/namespaces/team/time-machine", root, {"seconds": None})
    await api_call(origin, "POST", path, root, {"digest": v1.digest})  # back in the window


async def test_only_past_states_of_that_tag_can_be_restored(origin: Client, root: Auth) -> None:
    tagged, elsewhere = make_image("tagged"), make_image("elsewhere")
    await push_image(origin, "team/app", "one", tagged)
    await push_image(origin, "team/app", "other", elsewhere)
    path = "/repositories/team/app/-/tags/one/restore"
    # A manifest the repository holds, but never under this tag: refused.
    await api_call(origin, "POST", path, root, {"digest": elsewhere.digest}, expect=404)
    await api_call(origin, "POST", path, root, {"digest": "sha256:" + "0" * 64}, expect=404)
    await api_call(origin, "POST", path, root, {"digest": "md5:abc"}, expect=400)
    await api_call(origin, "POST", "/repositories/team/app/-/tags/bad~tag/restore", root,
               {"digest": tagged.digest}, expect=400)  # fmt: skip
    # A manifest deleted by digest cannot come back (its bytes may be collected).
    await push_image(origin, "team/app", "one", make_image("next"))
    async with origin.delete(f"/v2/team/app/manifests/{tagged.digest}") as r:
        assert r.status == 202
    await api_call(origin, "POST", path, root, {"digest": tagged.digest}, expect=404)


async def test_readers_see_history_but_only_writers_restore_and_admins_expire(
    origin: Client, root: Auth
) -> None:
    v1, v2 = make_image("r1"), make_image("r2")
    await push_image(origin, "team/app", "t", v1)
    await push_image(origin, "team/app", "t", v2)
    await api_call(origin, "POST", "/users", root, {"name": "reader", "password": "read-only-pw"},
               expect=201)  # fmt: skip
    await api_call(origin, "PUT", "/repositories/team/app/-/permissions/accounts/reader", root,
               {"role": "read"}, expect=204)  # fmt: skip
    reader = {"Authorization": encode_basic_auth("reader", "read-only-pw")}
    history = await api_call(origin, "GET", "/repositories/team/app/-/tags/t/history", reader)
    assert len(history["states"]) == 2
    await api_call(origin, "POST", "/repositories/team/app/-/tags/t/restore", reader,
               {"digest": v1.digest}, expect=403)  # fmt: skip
    await api_call(origin, "DELETE", "/repositories/team/app/-/tags/t/history", reader, expect=403)
    expired = await api_call(origin, "DELETE", "/repositories/team/app/-/tags/t/history", root)
    assert expired == {"forgotten": 1}
    history = await api_call(origin, "GET", "/repositories/team/app/-/tags/t/history", reader)
    assert [s["digest"] for s in history["states"]] == [v2.digest]
    await api_call(origin, "POST", "/repositories/team/app/-/tags/t/restore", root,
               {"digest": v1.digest}, expect=404)  # fmt: skip


async def test_immutable_tags_are_created_once_and_never_moved_or_deleted(
    origin: Client, root: Auth
) -> None:
    await api_call(origin, "POST", "/organizations", root, {"name": "team"}, expect=201)
    rule = await api_call(origin, "POST", "/namespaces/team/immutable-tags", root,
                      {"pattern": "v*"}, expect=201)  # fmt: skip
    assert (rule["namespace"], rule["repository"], rule["pattern"]) == ("team", None, "v*")
    v1, other = make_image("v1"), make_image("other")
    await push_image(origin, "team/app", "v1", v1)  # creating it is fine
    await push_image(origin, "team/app", "latest", v1)
    await push_image(origin, "team/app", "latest", other)  # tags no rule covers move freely
    for blob in other.blobs:
        await push_blob(origin, "team/app", blob)
    async with origin.put(
        "/v2/team/app/manifests/v1", data=other.manifest, headers={"Content-Type": OCI_MANIFEST}
    ) as r:
        assert r.status == 403
        (error,) = (await r.json())["errors"]
        assert error["code"] == "DENIED"
        assert error["message"] == "tag v1 is immutable (rule v*): push another tag"
    async with origin.put(  # the same manifest again moves nothing: allowed
        "/v2/team/app/manifests/v1", data=v1.manifest, headers={"Content-Type": OCI_MANIFEST}
    ) as r:
        assert r.status == 201
    async with origin.delete("/v2/team/app/manifests/v1") as r:
        assert r.status == 403
    async with origin.delete(f"/v2/team/app/manifests/{v1.digest}") as r:
        assert r.status == 403  # it would take v1 with it
    async with origin.get("/v2/team/app/manifests/v1", headers={"Accept": OCI_MANIFEST}) as r:
        assert await r.read() == v1.manifest
    await api_call(origin, "POST", "/repositories/team/app/-/tags/latest/restore", root,
               {"digest": v1.digest})  # fmt: skip
    # Removing the rule frees the tag.
    await api_call(origin, "DELETE", f"/namespaces/team/immutable-tags/{rule['id']}", root,
               expect=204)  # fmt: skip
    assert await api_call(origin, "GET", "/namespaces/team/immutable-tags", root) == []
    async with origin.delete("/v2/team/app/manifests/v1") as r:
        assert r.status == 202


async def test_a_rule_can_cover_one_repository_and_only_managers_set_rules(
    origin: Client, root: Auth
) -> None:
    await api_call(origin, "POST", "/organizations", root, {"name": "team"}, expect=201)
    await api_call(origin, "POST", "/namespaces/team/immutable-tags", root,
               {"pattern": "release-*", "repository": "team/locked"}, expect=201)  # fmt: skip
    await api_call(origin, "POST", "/namespaces/team/immutable-tags", root,
               {"pattern": "x", "repository": "elsewhere/app"}, expect=404)  # fmt: skip
    one, two = make_image("one"), make_image("two")
    for repo in ("team/locked", "team/free"):
        await push_image(origin, repo, "release-1", one)
    await push_image(origin, "team/free", "release-1", two)  # another repository: no rule
    async with origin.delete("/v2/team/locked/manifests/release-1") as r:
        assert r.status == 403
    await api_call(origin, "POST", "/users", root, {"name": "outsider", "password": "outsider-pw"},
               expect=201)  # fmt: skip
    outsider = {"Authorization": encode_basic_auth("outsider", "outsider-pw")}
    await api_call(origin, "POST", "/namespaces/team/immutable-tags", outsider,
               {"pattern": "*"}, expect=403)  # fmt: skip


async def test_a_namespace_has_at_most_fifty_immutability_rules(origin: Client, root: Auth) -> None:
    await api_call(origin, "POST", "/organizations", root, {"name": "team"}, expect=201)
    for i in range(MAX_IMMUTABLE_RULES):
        await api_call(origin, "POST", "/namespaces/team/immutable-tags", root,
                   {"pattern": f"v{i}.*"}, expect=201)  # fmt: skip
    refused = await api_call(origin, "POST", "/namespaces/team/immutable-tags", root,
                         {"pattern": "release-*"}, expect=403)  # fmt: skip
    assert refused["errors"][0]["message"] == (
        "team has 50 immutability rules, the most a namespace may have: remove one first"
    )
    rules = await api_call(origin, "GET", "/namespaces/team/immutable-tags", root)
    assert len(rules) == MAX_IMMUTABLE_RULES
