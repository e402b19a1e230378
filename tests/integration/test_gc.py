"""Continuous online garbage collection: what nothing reaches goes a grace period after a push
last touched it; what a tag, a tag state inside the time machine's window or a referrer's
subject reaches stays, byte for byte; disk usage comes down to what is reachable; a client
that uploads (or only asks for) a blob before its manifest never loses it to a collection.
Passes run here through the admin API (``POST /api/v1/gc``), so each test says when."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from aiohttp import encode_basic_auth
from sqlalchemy import text

from origin.config import OriginConfig
from origin.metadata.db import create_engine
from tests.support import (
    OCI_MANIFEST,
    Client,
    Image,
    api_call,
    descriptor,
    make_image,
    push_blob,
    push_image,
    push_manifest,
    sample,
    sha256,
)

GRACE = 1.0  # seconds: a day in production
Auth = dict[str, str]


@pytest.fixture
async def origin_config(origin_config: OriginConfig) -> OriginConfig:
    # No pass on a timer: each test runs its own, when it means to.
    return dataclasses.replace(origin_config, gc_grace_seconds=GRACE, gc_interval_seconds=0)


async def collect(origin: Client, root: Auth) -> dict[str, Any]:
    result: dict[str, Any] = await api_call(origin, "POST", "/gc", root)
    return result


async def past_grace() -> None:
    await asyncio.sleep(GRACE + 0.1)


async def collect_fully(origin: Client, root: Auth) -> None:
    """Passes until what is unreachable now is gone: one finds it (and tombstones its blobs),
    one a grace period later deletes the bytes."""
    await past_grace()
    await collect(origin, root)
    await past_grace()
    await collect(origin, root)


async def pulls(origin: Client, name: str, reference: str, image: Image) -> bool:
    async with origin.get(
        f"/v2/{name}/manifests/{reference}", headers={"Accept": OCI_MANIFEST}
    ) as r:
        if r.status != 200 or await r.read() != image.manifest:
            return False
    for blob in image.blobs:
        async with origin.get(f"/v2/{name}/blobs/{sha256(blob)}") as r:
            if r.status != 200 or await r.read() != blob:
                return False
    return True


async def manifest_status(origin: Client, name: str, digest: str) -> int:
    async with origin.head(f"/v2/{name}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}) as r:
        return r.status


def blob_files(data_dir: Path) -> dict[str, int]:
    """The committed blobs on disk, by digest: what storage actually holds."""
    found = {}
    for path in (data_dir / "blobs").rglob("*"):
        if path.is_file():
            found[f"{path.parent.parent.name}:{path.name}"] = path.stat().st_size
    return found


def reachable(*images: Image) -> dict[str, int]:
    return {sha256(b): len(b) for image in images for b in image.blobs}


async def set_window(origin: Client, root: Auth, namespace: str, seconds: int) -> None:
    if namespace != "admin":
        await api_call(origin, "POST", "/organizations", root, {"name": namespace}, expect=201)
    await api_call(
        origin, "PUT", f"/namespaces/{namespace}/time-machine", root, {"seconds": seconds}
    )


async def test_what_nothing_reaches_goes_and_what_is_reachable_stays_byte_for_byte(
    origin: Client, root: Auth, origin_config: OriginConfig
) -> None:
    await set_window(origin, root, "team", 0)  # no time machine: ended tags reach nothing
    kept, moved_away, untagged = make_image("kept"), make_image("moved"), make_image("untagged")
    child_a, child_b = make_image("child-a"), make_image("child-b")
    await push_image(origin, "team/app", "stable", kept)
    latest = make_image("latest")
    await push_image(origin, "team/app", "latest", moved_away)
    await push_image(origin, "team/app", "latest", latest)  # moves the tag
    for blob in untagged.blobs:
        await push_blob(origin, "team/app", blob)
    await push_manifest(origin, "team/app", untagged.digest, untagged.manifest)  # by digest
    # An index reaches its children; a tagged image reaches its referrers (a signature).
    for child in (child_a, child_b):
        for blob in child.blobs:
            await push_blob(origin, "team/app", blob)
        await push_manifest(origin, "team/app", child.digest, child.manifest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [descriptor(OCI_MANIFEST, c.manifest) for c in (child_a, child_b)],
        }
    ).encode()
    await push_manifest(
        origin, "team/app", "multi", index, "application/vnd.oci.image.index.v1+json"
    )
    signature = make_image(
        "signature",
        layers=1,
        extra={"subject": descriptor(OCI_MANIFEST, kept.manifest), "artifactType": "x/sig"},
    )
    for blob in signature.blobs:
        await push_blob(origin, "team/app", blob)
    await push_manifest(origin, "team/app", signature.digest, signature.manifest)
    orphan = await push_blob(origin, "team/app", b"a layer whose manifest never came" * 100)

    first = await collect(origin, root)  # inside the grace period: nothing goes
    assert (first["manifests"], first["links"], first["tombstoned"]) == (0, 0, 0)
    await collect_fully(origin, root)

    assert await manifest_status(origin, "team/app", moved_away.digest) == 404
    assert await manifest_status(origin, "team/app", untagged.digest) == 404
    async with origin.head(f"/v2/team/app/blobs/{orphan}") as r:
        assert r.status == 404
    for reference, image in [("stable", kept), (signature.digest, signature)]:
        assert await pulls(origin, "team/app", reference, image)
    for child in (child_a, child_b):
        assert await pulls(origin, "team/app", child.digest, child)
    on_disk = blob_files(origin_config.data_dir)
    assert on_disk == reachable(kept, latest, signature, child_a, child_b)  # and nothing else
    assert orphan not in on_disk

    metrics = await (await origin.get("/metrics")).text()
    assert sample(metrics, "wharf_origin_gc_deleted_total", kind="manifest") == 2
    assert sample(metrics, "wharf_origin_gc_deleted_total", kind="blob") == 2 * 3 + 1


async def test_content_inside_the_time_machine_window_survives_and_goes_once_it_has_passed(
    origin: Client, root: Auth, origin_config: OriginConfig
) -> None:
    v1, v2 = make_image("v1"), make_image("v2")
    await push_image(origin, "team/app", "release", v1)
    await push_image(origin, "team/app", "release", v2)  # v1's state ended: 2 weeks to go
    await collect_fully(origin, root)
    assert await pulls(origin, "team/app", v1.digest, v1)  # inside the window
    await api_call(
        origin,
        "POST",
        "/repositories/team/app/-/tags/release/restore",
        root,
        {"digest": v1.digest},
    )
    assert await pulls(origin, "team/app", "release", v1)

    # The window closes (the namespace's is set to nothing): v2's ended state reaches nothing.
    await set_window(origin, root, "team", 0)
    await collect_fully(origin, root)
    assert await manifest_status(origin, "team/app", v2.digest) == 404
    assert sha256(v2.layers[0]) not in blob_files(origin_config.data_dir)
    history = await api_call(origin, "GET", "/repositories/team/app/-/tags/release/history", root)
    assert [s["digest"] for s in history["states"]] == [v1.digest]  # ended states expired
    assert await pulls(origin, "team/app", "release", v1)


async def test_a_blob_uploaded_before_its_manifest_is_never_collected_from_under_it(
    origin: Client, root: Auth
) -> None:
    """The classic race, forced: blobs uploaded, then passes (past the grace period, even),
    then the manifest. An upload touches the link; a client that only asks (HEAD, as skopeo
    and podman do before skipping an upload) touches it again."""
    await set_window(origin, root, "team", 0)
    image = make_image("slow-push")
    for blob in image.blobs:
        await push_blob(origin, "team/app", blob)
    await collect(origin, root)
    await collect(origin, root)
    await push_manifest(origin, "team/app", "v1", image.manifest)
    assert await pulls(origin, "team/app", "v1", image)

    # The tag goes; its blobs are unreachable for a grace period... and a new push of the
    # same image asks for each blob (HEAD), finds it, and skips uploading it.
    async with origin.delete(f"/v2/team/app/manifests/{image.digest}") as r:
        assert r.status == 202
    await past_grace()
    for blob in image.blobs:
        async with origin.head(f"/v2/team/app/blobs/{sha256(blob)}") as r:
            assert r.status == 200
    first = await collect(origin, root)
    assert first["links"] == 0  # asked for just now: kept
    await push_manifest(origin, "team/app", "v1", image.manifest)
    await collect_fully(origin, root)
    assert await pulls(origin, "team/app", "v1", image)


async def test_an_upload_of_a_blob_due_for_deletion_brings_it_back(
    origin: Client, root: Auth, origin_config: OriginConfig
) -> None:
    await set_window(origin, root, "team", 0)
    image = make_image("again")
    await push_image(origin, "team/app", "v1", image)
    async with origin.delete(f"/v2/team/app/manifests/{image.digest}") as r:
        assert r.status == 202
    await past_grace()
    found = await collect(origin, root)
    assert found["tombstoned"] == 3  # due for deletion a grace period from now
    await past_grace()
    await push_image(origin, "team/app", "v1", image)  # the same bytes, pushed again
    swept = await collect(origin, root)
    assert swept["blobs"] == 0
    assert await pulls(origin, "team/app", "v1", image)
    assert set(reachable(image)) <= set(blob_files(origin_config.data_dir))


async def test_collection_under_load_loses_nothing_and_leaves_only_what_is_reachable(
    origin: Client, root: Auth, origin_config: OriginConfig
) -> None:
    """While a client pushes (new images, moving tags, deleting them) and another pulls in a
    loop, passes run back to back. Every pull of a tag that was not moving succeeds; after,
    every tag pulls byte for byte and the disk holds exactly what tags reach."""
    await set_window(origin, root, "load", 0)
    stable = {f"s{i}": make_image(f"stable-{i}") for i in range(3)}
    for tag, image in stable.items():
        await push_image(origin, "load/app", tag, image)
    current: dict[str, Image] = {}
    failures: list[str] = []
    stop = asyncio.Event()
    rng = random.Random(7)

    async def pusher(who: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tag = f"m{who}-{rng.randrange(4)}"  # tags of its own: it knows where they point
            if tag in current and rng.random() < 0.3:
                async with origin.delete(f"/v2/load/app/manifests/{current[tag].digest}") as r:
                    assert r.status in (202, 404)
                del current[tag]
            else:
                image = make_image(f"moving-{who}-{n}")
                await push_image(origin, "load/app", tag, image)
                current[tag] = image

    partial: list[str] = []
    engine = create_engine(origin_config.effective_database_url)

    async def watcher() -> None:
        """Nothing partial is ever visible: no manifest without the references it names."""
        query = text(
            "SELECT m.digest FROM manifests m WHERE NOT EXISTS "
            "(SELECT 1 FROM manifest_references r WHERE r.manifest_id = m.id)"
        )
        while not stop.is_set():
            async with engine.connect() as conn:
                partial.extend((await conn.execute(query)).scalars())
            await asyncio.sleep(0)

    async def puller() -> int:
        done = 0
        while not stop.is_set():
            tag, image = rng.choice(list(stable.items()))
            if not await pulls(origin, "load/app", tag, image):
                failures.append(tag)
            done += 1
        return done

    passes = 0

    async def collector() -> None:
        nonlocal passes
        while not stop.is_set():
            await collect(origin, root)
            passes += 1
            await asyncio.sleep(0.05)

    others = [asyncio.create_task(c) for c in (pusher(1), pusher(2), collector(), watcher())]
    pulling = asyncio.create_task(puller())
    await asyncio.sleep(4 * GRACE)
    stop.set()
    await asyncio.gather(*others)
    await engine.dispose()
    assert partial == []
    assert failures == []
    assert await pulling > 0  # pulls happened
    assert passes > 3  # and passes beside them

    await collect_fully(origin, root)
    everything = {**stable, **current}
    for tag, image in everything.items():
        assert await pulls(origin, "load/app", tag, image), tag
    assert blob_files(origin_config.data_dir) == reachable(*everything.values())


async def test_only_system_admins_run_passes(origin: Client, root: Auth) -> None:
    await api_call(
        origin, "POST", "/users", root, {"name": "dev", "password": "a-long-password-1"}, 201
    )
    dev = {"Authorization": encode_basic_auth("dev", "a-long-password-1")}
    await api_call(origin, "POST", "/gc", dev, expect=403)
