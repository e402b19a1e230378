"""Peers from configuration: the embedded default, where nothing comes and goes."""

from __future__ import annotations

from gossip.membership import View
from gossip.peer import Peer


class StaticMembership:
    def __init__(self, peers: tuple[Peer, ...]) -> None:
        self._view = View(peers)

    def peers(self) -> tuple[Peer, ...]:
        return self._view.peers()

    async def changed(self, seen: int) -> int:
        return await self._view.changed(seen)
