"""Membership: a snapshot of the healthy peers, and a way to wait until it changes.

Implementations: :class:`gossip.static.StaticMembership` (peers from config, the embedded
default) and :class:`gossip.consul.ConsulMembership`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gossip.peer import Peer


class Membership(Protocol):
    def peers(self) -> tuple[Peer, ...]:
        """The current view: every known healthy node, this one included."""
        ...

    async def changed(self, seen: int) -> int:
        """Wait until the view's version exceeds ``seen``; return the new version."""
        ...


class View:
    """A versioned view of peers that waiters can follow (shared by the implementations)."""

    def __init__(self, peers: tuple[Peer, ...] = ()) -> None:
        self._peers = peers
        self.version = 0
        self._changed = asyncio.Condition()

    def peers(self) -> tuple[Peer, ...]:
        return self._peers

    async def set(self, peers: tuple[Peer, ...]) -> None:
        if peers == self._peers:
            return
        self._peers = peers
        self.version += 1
        async with self._changed:
            self._changed.notify_all()

    async def changed(self, seen: int) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > seen)
        return self.version
