"""Membership through Consul: register this node, watch the healthy nodes of every role.

Each node registers a service (``wharf-origin`` or ``wharf-edge``) with its description as
Meta and an HTTP check on its readiness endpoint, with ``DeregisterCriticalServiceAfter`` so
a node that died is removed. The view comes from blocking queries on
``health/service/<name>?passing``, one loop per role. When Consul cannot be reached the last
good view is kept (never emptied) and the loop backs off with jitter; when it answers again
the node registers once more (an agent that restarted may have forgotten it). A clean
shutdown deregisters.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import consul
import consul.aio
import structlog

from gossip.membership import View
from gossip.peer import Peer

_log = structlog.get_logger("wharf.gossip.consul")
SERVICES = {"origin": "wharf-origin", "edge": "wharf-edge"}


@dataclass(frozen=True)
class ConsulSettings:
    address: str = "http://127.0.0.1:8500"  # the local agent
    token: str = field(default="", repr=False)  # ACL token; never logged
    datacenter: str = ""
    check_interval: str = "5s"
    check_timeout: str = "2s"
    deregister_after: str = "1m"  # Consul's minimum
    wait: str = "55s"  # blocking query wait
    reregister_seconds: float = 300.0  # register again this often, whatever happens


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    return float(duration)


def peer_of(entry: Mapping[str, Any]) -> Peer | None:
    """A peer from one ``health/service`` entry (None when its Meta is not Wharf's)."""
    service = entry.get("Service") or {}
    meta = service.get("Meta") or {}
    try:
        return Peer(
            id=str(service["ID"]),
            role=meta["role"],
            region=meta.get("region", ""),
            zone=meta.get("zone", ""),
            api_url=meta["api_url"],
            torrent_port=int(meta.get("torrent_port") or 0),
            version=meta.get("version", ""),
            healthy=True,
            since=time.time(),
        )
    except (KeyError, ValueError, TypeError):
        return None


class ConsulMembership:
    def __init__(self, me: Peer, settings: ConsulSettings, ready_path: str = "/readyz") -> None:
        self.me = me
        self.settings = settings
        self.ready_path = ready_path
        self._view = View((me,))
        self._by_role: dict[str, tuple[Peer, ...]] = {}
        self._client: consul.aio.Consul | None = None
        self._recovered = asyncio.Event()
        self.reachable = False

    def peers(self) -> tuple[Peer, ...]:
        return self._view.peers()

    async def changed(self, seen: int) -> int:
        return await self._view.changed(seen)

    def _connect(self) -> consul.aio.Consul:
        url = urlsplit(self.settings.address)
        return consul.aio.Consul(
            host=url.hostname or "127.0.0.1",
            port=url.port or 8500,
            scheme=url.scheme or "http",
            token=self.settings.token or None,
            dc=self.settings.datacenter or None,
            connections_timeout=_seconds(self.settings.wait) + 15,
        )

    async def register(self) -> None:
        assert self._client is not None
        check = consul.Check.http(
            self.me.api_url.rstrip("/") + self.ready_path,
            self.settings.check_interval,
            timeout=self.settings.check_timeout,
            deregister=self.settings.deregister_after,
        )
        address = urlsplit(self.me.api_url)
        await self._client.agent.service.register(
            SERVICES[self.me.role],
            service_id=self.me.id,
            address=address.hostname,
            port=address.port,
            meta=self.me.meta(),
            tags=[self.me.region, self.me.zone],
            check=check,
        )

    async def run(self) -> None:
        """Register and follow the view until cancelled (then deregister, if Consul lets us)."""
        self._client = self._connect()
        try:
            await asyncio.gather(self._keep_registered(), *(self._watch(role) for role in SERVICES))
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._client.agent.service.deregister(self.me.id)
            await self._client.close()

    async def _keep_registered(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.register()
            except Exception as exc:  # Consul down: try again soon, then less often
                _log.warning("consul registration failed", error=type(exc).__name__)
                await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            await self._wait_for_trouble(self.settings.reregister_seconds)

    async def _wait_for_trouble(self, seconds: float) -> None:
        """Until it is time to register again: at the period, or when Consul comes back."""
        self._recovered.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._recovered.wait()

    async def _watch(self, role: str) -> None:
        assert self._client is not None
        name = SERVICES[role]
        index: str | None = None
        delay = 0.5
        while True:
            try:
                new_index, entries = await self._client.health.service(
                    name, index=index, wait=self.settings.wait, passing=True
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the last view; back off with jitter
                if self.reachable:
                    _log.warning(
                        "consul unreachable; keeping the last view", error=type(exc).__name__
                    )
                self.reachable = False
                await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter
                delay = min(delay * 2, 30.0)
                continue
            if not self.reachable:
                self.reachable = True
                self._recovered.set()  # register again: the agent may have lost us
            delay = 0.5
            if index is not None and new_index is not None and _older(new_index, index):
                index = None  # the index went backwards: start over, gently
                await asyncio.sleep(1.0)
            else:
                index = new_index
            peers = tuple(p for e in entries if (p := peer_of(e)) is not None and p.role == role)
            self._by_role[role] = peers
            await self._publish()

    async def _publish(self) -> None:
        others = tuple(p for peers in self._by_role.values() for p in peers if p.id != self.me.id)
        await self._view.set(tuple(sorted((self.me, *others), key=lambda p: p.id)))


def _older(new: str, old: str) -> bool:
    try:
        return int(new) < int(old)
    except ValueError:
        return False
