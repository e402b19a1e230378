"""The edge's store on its own: LRU order, readers and pins spared, the index surviving a
restart and reconciled with the files."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from edge.store import BlobStore
from ocicore.digest import Digest


async def put(store: BlobStore, data: bytes) -> Digest:
    digest = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
    upload = str(uuid.uuid4())
    store.temp_path(upload).write_bytes(data)
    await store.admit(upload, digest, digest.encoded)
    return digest


async def test_pinned_and_read_blobs_outlive_colder_ones(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, capacity=300)
    store.load()
    pinned = await put(store, b"p" * 100)
    store.pin(pinned)
    read = await put(store, b"r" * 100)
    cold = await put(store, b"c" * 100)
    with store.reading(read):
        await put(store, b"n" * 100)  # over capacity: the oldest that may go, goes
    assert store.size(pinned) == 100
    assert store.size(read) == 100
    assert store.size(cold) is None
    assert not store.path(cold).exists()
    store.unpin(pinned)
    await put(store, b"m" * 100)
    assert store.size(pinned) is None  # unpinned, it was the least recently used
    store.close()


async def test_the_index_survives_a_restart_and_follows_the_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, capacity=10_000)
    store.load()
    kept = await put(store, b"kept")
    lost = await put(store, b"lost")
    store.close()
    store.path(lost).unlink()  # a file gone behind the edge's back
    orphan = Digest.parse("sha256:" + hashlib.sha256(b"orphan").hexdigest())
    store.path(orphan).parent.mkdir(parents=True, exist_ok=True)
    store.path(orphan).write_bytes(b"orphan")  # committed just before a crash, unindexed
    (tmp_path / "uploads" / str(uuid.uuid4())).write_bytes(b"half a fill")

    again = BlobStore(tmp_path, capacity=10_000)
    again.load()
    assert again.size(kept) == 4
    assert again.size(lost) is None
    assert again.size(orphan) == 6
    assert again.total == 10
    assert list((tmp_path / "uploads").iterdir()) == []
    again.close()
