"""Peer choice: nearest first, one home per digest, and homes that stay put through churn."""

from __future__ import annotations

from gossip.peer import Peer
from gossip.ring import by_distance, home, home_edge
from wharf.members import table


def edge(name: str, region: str = "eu", zone: str = "a", healthy: bool = True) -> Peer:
    return Peer(name, "edge", region, zone, f"http://{name}:5001", healthy=healthy)


def test_nearest_first() -> None:
    me = edge("me", "eu", "a")
    peers = [edge("far", "us", "a"), edge("region", "eu", "b"), edge("zone", "eu", "a"), me]
    assert [p.id for p in by_distance(me, peers)] == ["zone", "region", "far"]


def test_homes_move_only_for_the_node_that_left() -> None:
    nodes = [edge(f"e{i}") for i in range(8)]
    keys = [f"sha256:{i:064x}" for i in range(2000)]
    before = {k: home(k, nodes) for k in keys}
    spread = {p.id for p in before.values() if p is not None}
    assert len(spread) == 8  # every node is home to some digests
    gone = nodes[3]
    after = {k: home(k, [n for n in nodes if n is not gone]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved
    assert all(before[k] is gone for k in moved)  # only the departed node's digests moved


def test_the_home_edge_is_a_healthy_edge_of_my_region() -> None:
    me = edge("me", "eu")
    others = [edge("us1", "us"), edge("down", "eu", healthy=False), edge("eu1", "eu")]
    origin = Peer("origin", "origin", "eu", "a", "http://origin:5000")
    for i in range(50):
        chosen = home_edge(me, f"sha256:{i:064x}", [me, *others, origin])
        assert chosen is not None
        assert chosen.id in {"me", "eu1"}


def test_members_table() -> None:
    rows = [
        {
            "id": "edge-a",
            "role": "edge",
            "region": "eu",
            "zone": "a",
            "api_url": "http://x:5001",
            "healthy": True,
            "age_seconds": None,
        }
    ]
    assert table(rows).splitlines() == [
        "ID      ROLE  REGION  ZONE  API_URL        HEALTHY  AGE_SECONDS",
        "edge-a  edge  eu      a     http://x:5001  True     -",
    ]
