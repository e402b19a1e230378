"""Which peer to ask: nearest first, and one home edge per digest by rendezvous hashing.

Rendezvous (highest random weight) hashing gives every digest a home among a region's healthy
edges such that when an edge joins or leaves, only the digests whose home it was (or becomes)
move: the others keep theirs, so the region's caches stay useful through churn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from gossip.peer import Peer


def weight(peer_id: str, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{peer_id}\0{key}".encode(), digest_size=8).digest())


def home(key: str, peers: Iterable[Peer]) -> Peer | None:
    """The peer with the highest weight for ``key`` (None when there is none)."""
    return max(peers, key=lambda p: weight(p.id, key), default=None)


def by_distance(me: Peer, peers: Iterable[Peer]) -> list[Peer]:
    """Other peers, nearest first: same zone, then same region, then the rest (stable)."""

    def distance(peer: Peer) -> int:
        if peer.region == me.region:
            return 0 if peer.zone == me.zone else 1
        return 2

    return sorted((p for p in peers if p.id != me.id), key=distance)


def home_edge(me: Peer, key: str, peers: Sequence[Peer]) -> Peer | None:
    """The home of ``key`` among the healthy edges of ``me``'s region (itself included)."""
    edges = [p for p in peers if p.role == "edge" and p.healthy and p.region == me.region]
    return home(key, edges)
