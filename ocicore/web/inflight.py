"""Counting requests in flight, so that a draining process knows when it may stop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class InFlight:
    """Requests being served, counted until their last byte is sent."""

    count: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        if self.count:
            await self._idle.wait()


IN_FLIGHT = web.AppKey("in_flight", InFlight)
