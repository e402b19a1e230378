"""This node in the membership: how it describes itself, and the membership it runs."""

from __future__ import annotations

import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from gossip.consul import ConsulMembership, ConsulSettings
from gossip.membership import Membership
from gossip.peer import Peer
from gossip.static import StaticMembership


@dataclass(frozen=True)
class StaticPeer:
    """A ``[[edge.peers]]`` / ``[[origin.peers]]`` table: another node, for static discovery."""

    id: str
    role: str
    api_url: str
    region: str = "local"
    zone: str = "local"
    torrent_port: int = 0

    def peer(self) -> Peer:
        return Peer(self.id, self.role, self.region, self.zone, self.api_url, self.torrent_port)


@dataclass(frozen=True)
class Gossip:
    discovery: str = "static"  # "static" | "consul"
    consul: ConsulSettings = field(default_factory=ConsulSettings)
    peers: tuple[StaticPeer, ...] = ()

    def __post_init__(self) -> None:
        if self.discovery not in ("static", "consul"):
            raise ValueError(f"discovery must be static or consul, not {self.discovery!r}")


def default_id(role: str, api_url: str) -> str:
    """A node id stable across restarts: role, host name and port."""
    port = api_url.rsplit(":", 1)[-1].strip("/")
    return f"{role}-{socket.gethostname()}-{port}"


def start(me: Peer, gossip: Gossip) -> tuple[Membership, Coroutine[Any, Any, None] | None]:
    """The membership for ``me``, and the coroutine to run for as long as the node lives."""
    if gossip.discovery == "consul":
        membership = ConsulMembership(me, gossip.consul)
        return membership, membership.run()
    others = tuple(p.peer() for p in gossip.peers if p.id != me.id)
    return StaticMembership((me, *others)), None


@dataclass(frozen=True)
class NodeSettings:
    """Where a node is and how it finds the others: fields shared by the origin's and the
    edges' settings."""

    region: str = "local"
    zone: str = "local"
    node_id: str = ""  # empty: <role>-<hostname>-<port>
    advertise_url: str = ""  # how peers reach this node; empty: the address it listens on
    discovery: str = "static"  # "static" (peers below) or "consul"
    peers: tuple[StaticPeer, ...] = ()
    consul_address: str = "http://127.0.0.1:8500"
    consul_token: str = field(default="", repr=False)
    consul_datacenter: str = ""
    consul_check_interval: str = "5s"
    consul_deregister_after: str = "1m"

    def gossip(self) -> Gossip:
        return Gossip(
            self.discovery,
            ConsulSettings(
                address=self.consul_address,
                token=self.consul_token,
                datacenter=self.consul_datacenter,
                check_interval=self.consul_check_interval,
                deregister_after=self.consul_deregister_after,
            ),
            self.peers,
        )

    def me(self, role: str, listening_url: str, version: str = "", torrent_port: int = 0) -> Peer:
        url = self.advertise_url or listening_url
        return Peer(
            self.node_id or default_id(role, url),
            role,
            self.region,
            self.zone,
            url,
            torrent_port,
            version,
        )
