"""A Consul HTTP API double: several agents sharing one catalog, KV store and session table.

Design. Every simulated node runs its own agent: an aiohttp server on its own loopback port in
the test's event loop (``port_of(node)``; ``url``/``host``/``port`` are the first node's). A
service registered through a node's port lives on that node, as with a real agent on each host,
and every port answers the catalog, health, KV and session endpoints. ``fail_node`` kills a
node's agent: its port refuses connections, its checks stop running, its ``serfHealth`` goes
critical (so its instances stay listed but never ``passing``) and its sessions are invalidated;
``restore_node`` restarts it on the same port. ``stop``/``start`` take the whole of Consul down
and up again on the same ports (open connections, including blocking queries, are dropped);
``restart(keep_state=False)`` comes back empty with indexes starting over. A restarted agent
keeps its TTL checks' status (timers restart) and puts other checks back to their initial
status; HTTP checks first run after a random stagger within Interval, as Consul's do. Every node
has the address ``host``; an empty ``Service.Address`` is returned empty, as Consul does, and
clients must fall back to ``Node.Address``.

Semantics follow /work/shared/CONSUL.md. JSON keys are matched as Consul matches them (any case,
snake_case too), since py-consul sends ``name``/``checks``/``ttl``. Knobs for fast tests, real
Consul values by default: ``reap_interval`` (30 s) and ``min_deregister`` (60 s) for
DeregisterCriticalServiceAfter, ``min_check_interval`` (1 s) for HTTP checks, and
``session_time_scale`` which scales session TTLs and lock delays (py-consul only sends TTLs of
10 s and more). A session is invalidated 2 x TTL after its last renewal, as Consul does.
``wake_blocked()`` injects a wake-up without change, ``jump_index(n)`` makes indexes jump
(n > 0) or go backwards (n < 0).

Not modelled: script/TCP/gRPC/alias checks (400), /v1/agent/check/register, the catalog
endpoints, ``filter``/``near``/``node-meta`` (400), ACLs, other datacenters, anti-entropy delays,
SuccessBeforePassing/FailuresBeforeCritical, maintenance mode, transactions, prepared queries.
Output-only check changes do not bump indexes (Consul syncs them every 5 minutes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
NODE = web.AppKey("node", str)
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNMODELLED_CHECKS = ("tcp", "script", "args", "grpc", "dockercontainerid", "h2ping", "udp")


def parse_duration(value: Any) -> float:
    """A Go duration ("10s", "1m30s", "500ms") or a number of nanoseconds, in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1e9
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    if text == "0":
        return 0.0
    parts = _PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"time: invalid duration {value!r}")
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


def _norm(obj: Any) -> dict[str, Any]:
    """Keys as Consul's decoder matches them: case-insensitive, snake_case allowed."""
    if not isinstance(obj, dict):
        raise ValueError("Request decode failed: expected an object")
    return {str(k).lower().replace("_", ""): v for k, v in obj.items()}


def _bool(value: str) -> bool:
    if value in ("", "1", "t", "T", "true", "True", "TRUE"):
        return True
    if value in ("0", "f", "F", "false", "False", "FALSE"):
        return False
    raise ValueError(f"invalid boolean {value!r}")


@dataclass
class _Check:
    node: str
    id: str
    name: str
    status: str
    service_id: str = ""
    output: str = ""
    notes: str = ""
    ttl: float | None = None
    http: str | None = None
    method: str = "GET"
    header: dict[str, list[str]] = field(default_factory=dict)
    interval: float = 0.0
    timeout: float = 10.0
    tls_skip_verify: bool = False
    deregister_after: float | None = None
    initial: str = CRITICAL
    deadline: float | None = None  # TTL expiry
    critical_since: float | None = None
    create_index: int = 0
    modify_index: int = 0

    def json(self, service_name: str, tags: list[str]) -> dict[str, Any]:
        kind = "ttl" if self.ttl is not None else "http" if self.http else ""
        return {
            "Node": self.node, "CheckID": self.id, "Name": self.name, "Status": self.status,
            "Notes": self.notes, "Output": self.output, "ServiceID": self.service_id,
            "ServiceName": service_name, "ServiceTags": tags, "Type": kind,
            "Interval": f"{self.interval}s" if self.http else "",
            "Timeout": f"{self.timeout}s" if self.http else "", "ExposedPort": 0,
            "Definition": {}, "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }  # fmt: skip


@dataclass
class _Service:
    node: str
    id: str
    name: str
    tags: list[str]
    address: str
    port: int
    meta: dict[str, str]
    create_index: int
    modify_index: int

    def json(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Service": self.name, "Tags": list(self.tags), "Address": self.address,
            "Meta": dict(self.meta), "Port": self.port, "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False, "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }  # fmt: skip


@dataclass
class _Entry:
    key: str
    value: bytes
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str | None = None

    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "Key": self.key, "Flags": self.flags, "LockIndex": self.lock_index,
            "Value": base64.b64encode(self.value).decode() if self.value else None,
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        }  # fmt: skip
        if self.session:
            doc["Session"] = self.session
        return doc


@dataclass
class _Session:
    id: str
    name: str
    node: str
    checks: list[str]
    behavior: str
    ttl: str
    lock_delay: float  # seconds, unscaled
    index: int
    deadline: float | None = None

    def json(self) -> dict[str, Any]:
        return {
            "ID": self.id, "Name": self.name, "Node": self.node, "NodeChecks": self.checks,
            "ServiceChecks": None, "LockDelay": int(self.lock_delay * 1e9),
            "Behavior": self.behavior, "TTL": self.ttl, "CreateIndex": self.index,
            "ModifyIndex": self.index,
        }  # fmt: skip


class ConsulDouble:
    _index: int

    def __init__(
        self,
        nodes: Sequence[str] = ("node-1",),
        *,
        host: str = "127.0.0.1",
        datacenter: str = "dc1",
        reap_interval: float = 30.0,
        min_deregister: float = 60.0,
        min_check_interval: float = 1.0,
        session_time_scale: float = 1.0,
        tick: float = 0.01,
    ) -> None:
        if not nodes:
            raise ValueError("at least one node")
        self.host, self.datacenter = host, datacenter
        self.reap_interval, self.min_deregister = reap_interval, min_deregister
        self.min_check_interval, self.session_time_scale = min_check_interval, session_time_scale
        self._tick = tick
        self._ports = dict.fromkeys(nodes, 0)
        self._failed: set[str] = set()
        self._runners: dict[str, web.AppRunner] = {}
        self._probes: dict[tuple[str, str], tuple[_Check, asyncio.Task[None]]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._client: aiohttp.ClientSession | None = None
        self._changed = asyncio.Event()
        self._wake_gen = 0
        self._reset_state()

    # -- controls -------------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self._ports)

    @property
    def port(self) -> int:
        return self.port_of(self.nodes[0])

    @property
    def url(self) -> str:
        return self.url_of(self.nodes[0])

    def port_of(self, node: str) -> int:
        return self._ports[node]

    def url_of(self, node: str) -> str:
        return f"http://{self.host}:{self._ports[node]}"

    @property
    def running(self) -> bool:
        return self._ticker is not None

    async def start(self) -> None:
        """Start every agent that is not failed, on the same ports as before if any."""
        if self.running:
            return
        self._client = aiohttp.ClientSession()
        self._ticker = asyncio.create_task(self._tick_loop())
        self._next_reap = self._now() + self.reap_interval
        for node in self.nodes:
            if node not in self._failed:
                await self._agent_up(node)
        now = self._now()
        for s in self._sessions.values():  # a new leader restarts the session timers
            s.deadline = self._session_deadline(s, now)

    async def stop(self) -> None:
        """Consul goes down: ports refuse connections, open requests are cut off."""
        if self._ticker is None:
            return
        self._ticker.cancel()
        await asyncio.gather(self._ticker, return_exceptions=True)
        self._ticker = None
        await asyncio.gather(*(self._agent_down(n) for n in list(self._runners)))
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def restart(self, keep_state: bool = True) -> None:
        await self.stop()
        if not keep_state:
            self._reset_state()
        await self.start()

    async def fail_node(self, node: str) -> None:
        """The node's agent dies: its port closes and serfHealth goes critical."""
        self._failed.add(node)
        await self._agent_down(node)
        self._set_status(
            self._checks[(node, "serfHealth")], CRITICAL, "Agent not live or unreachable"
        )

    async def restore_node(self, node: str) -> None:
        self._failed.discard(node)
        if self.running:
            await self._agent_up(node)

    def wake_blocked(self) -> None:
        """Blocking queries return now, with unchanged indexes."""
        self._wake_gen += 1
        self._notify()

    def jump_index(self, delta: int) -> None:
        """Indexes jump forwards (delta > 0) or go backwards (delta < 0): a snapshot restore,
        which also returns every blocking query at once, as Consul abandons them."""
        self._index = max(1, self._index + delta)
        self._wake_gen += delta < 0
        tables = (self._svc_index, self._tombstones)
        for table in tables:
            for key in table:
                table[key] = self._index if delta > 0 else min(table[key], self._index)
        for e in self._kv.values():
            e.modify_index = self._index if delta > 0 else min(e.modify_index, self._index)
        self._services_table = self._kv_table = self._session_table = self._index
        self._notify()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- state ----------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._index = 1
        self._services: dict[tuple[str, str], _Service] = {}
        self._checks: dict[tuple[str, str], _Check] = {}
        self._svc_index: dict[str, int] = {}
        self._kv: dict[str, _Entry] = {}
        self._tombstones: dict[str, int] = {}
        self._lock_delays: dict[str, float] = {}
        self._sessions: dict[str, _Session] = {}
        self._services_table = self._kv_table = self._session_table = 1
        for node in self.nodes:
            failed = node in self._failed
            status, output = (
                (CRITICAL, "Agent not live or unreachable")
                if failed
                else (PASSING, "Agent alive and reachable")
            )
            self._checks[(node, "serfHealth")] = _Check(
                node, "serfHealth", "Serf Health Status", status, output=output,
                create_index=1, modify_index=1,
            )  # fmt: skip

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _next(self) -> int:
        self._index += 1
        return self._index

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _touch(self, name: str, index: int) -> None:
        self._svc_index[name] = index
        self._services_table = index

    def _set_status(self, check: _Check, status: str, output: str) -> None:
        check.output = output[:4096]
        if check.status == status:
            return
        index = self._next()
        check.status, check.modify_index = status, index
        check.critical_since = self._now() if status == CRITICAL else None
        for svc in self._services.values():
            if svc.node == check.node and check.service_id in ("", svc.id):
                self._touch(svc.name, index)
        if status == CRITICAL:
            for s in list(self._sessions.values()):
                if s.node == check.node and check.id in s.checks:
                    self._invalidate(s.id)
        self._notify()

    def _remove_service(self, node: str, service_id: str) -> None:
        svc = self._services.pop((node, service_id))
        for key in [k for k, c in self._checks.items() if k[0] == node and c.service_id == svc.id]:
            del self._checks[key]
        self._touch(svc.name, self._next())
        self._sync_probes()
        self._notify()

    def _session_deadline(self, s: _Session, now: float) -> float | None:
        ttl = parse_duration(s.ttl) if s.ttl else 0.0
        return now + 2 * ttl * self.session_time_scale if ttl else None

    def _invalidate(self, session_id: str) -> None:
        s = self._sessions.pop(session_id, None)
        if s is None:
            return
        index = self._session_table = self._next()
        for e in [e for e in self._kv.values() if e.session == session_id]:
            if s.lock_delay:
                self._lock_delays[e.key] = self._now() + s.lock_delay * self.session_time_scale
            if s.behavior == "delete":
                del self._kv[e.key]
                self._tombstones[e.key] = index
            else:
                e.session, e.modify_index = None, index
            self._kv_table = index
        self._notify()

    # -- agents and background work ------------------------------------------------------

    async def _agent_up(self, node: str) -> None:
        if node in self._runners:
            return
        app = web.Application(middlewares=[_errors])
        app[NODE] = node
        self._routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.05)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._ports[node])
        await site.start()
        self._ports[node] = int(runner.addresses[0][1])
        self._runners[node] = runner
        now = self._now()
        for c in self._checks.values():  # a restarted agent: TTL state kept, others start over
            if c.node != node or c.id == "serfHealth":
                continue
            if c.ttl is not None:
                c.deadline = now + c.ttl
            else:
                self._set_status(c, c.initial, "")
            if c.status == CRITICAL:
                c.critical_since = now
        self._set_status(self._checks[(node, "serfHealth")], PASSING, "Agent alive and reachable")
        self._sync_probes()

    async def _agent_down(self, node: str) -> None:
        runner = self._runners.pop(node, None)
        await asyncio.gather(*self._sync_probes(), return_exceptions=True)
        if runner is not None:
            await runner.cleanup()

    def _sync_probes(self) -> list[asyncio.Task[None]]:
        """One probe task per HTTP check of every running agent; returns those cancelled."""
        want = {
            k: c
            for k, c in self._checks.items()
            if c.http and k[0] in self._runners and self._client is not None
        }
        cancelled = []
        for key, (check, task) in list(self._probes.items()):
            if want.get(key) is not check:
                task.cancel()
                cancelled.append(task)
                del self._probes[key]
        for key, check in want.items():
            if key not in self._probes:
                self._probes[key] = (check, asyncio.create_task(self._probe_loop(check)))
        return cancelled

    async def _probe_loop(self, check: _Check) -> None:
        await asyncio.sleep(random.uniform(0, check.interval))  # Consul staggers the first run
        while True:
            status, output = await self._probe(check)
            self._set_status(check, status, output)
            await asyncio.sleep(check.interval)

    async def _probe(self, c: _Check) -> tuple[str, str]:
        assert self._client is not None
        assert c.http is not None
        headers = {"User-Agent": "Consul Health Check", "Accept": "text/plain, text/*, */*"}
        headers.update({k: v[0] for k, v in c.header.items() if v})
        try:
            async with self._client.request(
                c.method, c.http, headers=headers, ssl=not c.tls_skip_verify,
                timeout=aiohttp.ClientTimeout(total=c.timeout),
            ) as r:  # fmt: skip
                body = (await r.content.read(4096)).decode(errors="replace")
        except TimeoutError:
            return CRITICAL, f"{c.method} {c.http}: context deadline exceeded"
        except aiohttp.ClientError as error:
            return CRITICAL, f"{c.method} {c.http}: {error}"
        status = PASSING if 200 <= r.status < 300 else WARNING if r.status == 429 else CRITICAL
        return status, f"HTTP {c.method} {c.http}: {r.status} {r.reason} Output: {body}"

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = self._now()
            for c in list(self._checks.values()):
                if c.deadline is not None and c.deadline <= now and c.node in self._runners:
                    c.deadline = None
                    self._set_status(c, CRITICAL, "TTL expired")
            for s in list(self._sessions.values()):
                if s.deadline is not None and s.deadline <= now:
                    self._invalidate(s.id)
            if now >= self._next_reap:
                self._next_reap = now + self.reap_interval
                self._reap(now)

    def _reap(self, now: float) -> None:
        """The agents' reaper: DeregisterCriticalServiceAfter, with Consul's 1 minute floor."""
        for c in list(self._checks.values()):
            if (
                c.deregister_after is not None
                and c.node in self._runners
                and c.critical_since is not None
                and now - c.critical_since > max(c.deregister_after, self.min_deregister)
                and (c.node, c.service_id) in self._services
            ):
                self._remove_service(c.node, c.service_id)

    # -- HTTP -----------------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_put("/v1/agent/service/register", self._register)
        app.router.add_put("/v1/agent/service/deregister/{id}", self._deregister)
        app.router.add_put("/v1/agent/check/{action:pass|warn|fail}/{id}", self._ttl)
        app.router.add_get("/v1/agent/services", self._agent_services)
        app.router.add_get("/v1/agent/checks", self._agent_checks)
        app.router.add_get("/v1/health/service/{name}", self._health)
        app.router.add_get("/v1/kv/{key:.*}", self._kv_get)
        app.router.add_put("/v1/kv/{key:.*}", self._kv_put)
        app.router.add_delete("/v1/kv/{key:.*}", self._kv_delete)
        app.router.add_put("/v1/session/create", self._session_create)
        app.router.add_put("/v1/session/renew/{id}", self._session_renew)
        app.router.add_put("/v1/session/destroy/{id}", self._session_destroy)
        app.router.add_get("/v1/session/info/{id}", self._session_info)
        app.router.add_get("/v1/session/list", self._session_info)
        app.router.add_get("/v1/status/leader", self._leader)

    def _reply(self, body: Any, index: int | None = None, status: int = 200) -> web.Response:
        headers = {"X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0"}
        if index is not None:
            headers["X-Consul-Index"] = str(max(1, index))
        if status == 404:
            return web.Response(status=404, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def _block(self, request: web.Request, current: Callable[[], int]) -> int:
        """Blocking query: wait while the index is not above ``?index``, up to ``?wait``."""
        query = request.query
        _unmodelled(request, "filter", "near", "node-meta", "peer")
        if query.get("dc", self.datacenter) != self.datacenter:
            raise web.HTTPInternalServerError(text="No path to datacenter")
        try:
            wanted = int(query.get("index", "0"))
            wait = min(parse_duration(query.get("wait", "5m")), 600.0)
        except ValueError:
            raise web.HTTPBadRequest(text="Invalid index or wait time") from None
        if wanted > 0:
            loop, generation = asyncio.get_running_loop(), self._wake_gen
            deadline = loop.time() + wait + random.uniform(0, wait / 16)
            while current() <= wanted and generation == self._wake_gen:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        return current()

    async def _register(self, request: web.Request) -> web.Response:
        node = request.app[NODE]
        body = _norm(await _body(request))
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise web.HTTPBadRequest(text="Missing service name")
        sid = str(body.get("id") or name)
        meta = body.get("meta") or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise web.HTTPBadRequest(text="Request decode failed: Meta values must be strings")
        defs = ([body["check"]] if body.get("check") else []) + list(body.get("checks") or [])
        checks = [
            self._parse_check(_norm(d), node, sid, n, len(defs)) for n, d in enumerate(defs, 1)
        ]
        old = self._services.get((node, sid))
        index, now = self._next(), self._now()
        self._services[(node, sid)] = _Service(
            node, sid, name, [str(t) for t in body.get("tags") or []], str(body.get("address") or ""),
            int(body.get("port") or 0), dict(meta), old.create_index if old else index, index,
        )  # fmt: skip
        for c in checks:
            prev = self._checks.get((node, c.id))
            if prev is not None:  # Consul keeps a re-registered check's state
                c.status, c.output, c.critical_since = prev.status, prev.output, prev.critical_since
            elif c.status == CRITICAL:
                c.critical_since = now
            c.create_index = prev.create_index if prev else index
            c.modify_index = index
            self._checks[(node, c.id)] = c
        if "replace-existing-checks" in request.query and _bool(
            request.query["replace-existing-checks"]
        ):
            keep = {c.id for c in checks}
            for key, c in list(self._checks.items()):
                if key[0] == node and c.service_id == sid and c.id not in keep:
                    del self._checks[key]
        self._touch(name, index)
        if old is not None and old.name != name:
            self._touch(old.name, index)
        self._sync_probes()
        self._notify()
        return web.Response()

    def _parse_check(self, d: dict[str, Any], node: str, sid: str, n: int, total: int) -> _Check:
        if any(d.get(k) for k in _UNMODELLED_CHECKS):
            raise web.HTTPBadRequest(text="check type not modelled by the Consul double")
        default_id = f"service:{sid}" + (f":{n}" if total > 1 else "")
        check_id = str(d.get("checkid") or d.get("id") or default_id)
        status = str(d.get("status") or CRITICAL)
        if status not in (PASSING, WARNING, CRITICAL):
            raise web.HTTPBadRequest(text=f"Invalid check status: {status!r}")
        ttl = parse_duration(d["ttl"]) if d.get("ttl") else None
        http = str(d["http"]) if d.get("http") else None
        if (ttl is None) == (http is None):
            raise web.HTTPBadRequest(text="Invalid check: exactly one of TTL or HTTP is needed")
        interval = parse_duration(d.get("interval") or 0)
        if http and interval <= 0:
            raise web.HTTPBadRequest(text="Interval must be > 0 for Script, HTTP, or TCP checks")
        dereg = d.get("deregistercriticalserviceafter")
        return _Check(
            node, check_id, str(d.get("name") or f"Service '{sid}' check"), status,
            service_id=sid, notes=str(d.get("notes") or ""), ttl=ttl, http=http,
            method=str(d.get("method") or "GET"), header=dict(d.get("header") or {}),
            interval=max(interval, self.min_check_interval),
            timeout=parse_duration(d["timeout"]) if d.get("timeout") else 10.0,
            tls_skip_verify=bool(d.get("tlsskipverify")), initial=status,
            deregister_after=parse_duration(dereg) if dereg else None,
            deadline=self._now() + ttl if ttl else None,
        )  # fmt: skip

    async def _deregister(self, request: web.Request) -> web.Response:
        key = (request.app[NODE], request.match_info["id"])
        if key not in self._services:
            raise web.HTTPNotFound(text=f'Unknown service ID "{key[1]}"')
        self._remove_service(*key)
        return web.Response()

    async def _ttl(self, request: web.Request) -> web.Response:
        check = self._checks.get((request.app[NODE], request.match_info["id"]))
        if check is None:
            raise web.HTTPNotFound(text=f'Unknown check ID "{request.match_info["id"]}"')
        if check.ttl is None:
            raise web.HTTPInternalServerError(
                text=f'CheckID "{check.id}" does not have associated TTL'
            )
        status = {"pass": PASSING, "warn": WARNING, "fail": CRITICAL}[request.match_info["action"]]
        output = request.query.get("note", "")
        check.deadline = self._now() + check.ttl
        self._set_status(check, status, output)
        return web.Response()

    async def _agent_services(self, request: web.Request) -> web.Response:
        node = request.app[NODE]
        return self._reply({s.id: s.json() for s in self._services.values() if s.node == node})

    async def _agent_checks(self, request: web.Request) -> web.Response:
        node = request.app[NODE]
        return self._reply(
            {
                c.id: self._check_json(c)
                for c in self._checks.values()
                if c.node == node and c.service_id
            }
        )

    def _check_json(self, c: _Check) -> dict[str, Any]:
        svc = self._services.get((c.node, c.service_id))
        return c.json(svc.name if svc else "", list(svc.tags) if svc else [])

    async def _health(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        passing = _bool(request.query["passing"]) if "passing" in request.query else False
        tags = request.query.getall("tag", [])
        index = await self._block(request, lambda: self._svc_index.get(name, self._services_table))
        rows = []
        for svc in sorted(self._services.values(), key=lambda s: (s.node, s.id)):
            if svc.name != name or not all(t in svc.tags for t in tags):
                continue
            checks = [
                c
                for c in self._checks.values()
                if c.node == svc.node and c.service_id in ("", svc.id)
            ]
            if passing and any(c.status != PASSING for c in checks):
                continue
            node = {
                "ID": str(uuid.uuid5(uuid.NAMESPACE_DNS, svc.node)), "Node": svc.node,
                "Address": self.host, "Datacenter": self.datacenter,
                "TaggedAddresses": {"lan": self.host, "wan": self.host}, "Meta": {},
                "CreateIndex": 1, "ModifyIndex": 1,
            }  # fmt: skip
            rows.append(
                {
                    "Node": node,
                    "Service": svc.json(),
                    "Checks": [self._check_json(c) for c in checks],
                }
            )
        return self._reply(rows, index)

    # -- KV and sessions -------------------------------------------------------------------

    def _kv_index(self, key: str, prefix: bool) -> int:
        hits = [e.modify_index for k, e in self._kv.items() if _under(k, key, prefix)]
        hits += [i for k, i in self._tombstones.items() if _under(k, key, prefix)]
        return max(hits, default=0) or self._kv_table

    async def _kv_get(self, request: web.Request) -> web.Response:
        key, q = request.match_info["key"], request.query
        prefix = "recurse" in q or "keys" in q
        index = await self._block(request, lambda: self._kv_index(key, prefix))
        found = sorted(
            (e for k, e in self._kv.items() if _under(k, key, prefix)), key=lambda e: e.key
        )
        if not found:
            return self._reply(None, index, status=404)
        if "keys" in q:  # with ?separator, keys are cut after its first occurrence past the prefix
            sep = q.get("separator", "")
            cuts = [(e.key, e.key[len(key) :].find(sep) if sep else -1) for e in found]
            return self._reply(
                sorted({k if i < 0 else k[: len(key) + i + len(sep)] for k, i in cuts}), index
            )
        if "raw" in q:
            return web.Response(body=found[0].value, headers={"X-Consul-Index": str(index)})
        return self._reply([e.json() for e in found], index)

    async def _kv_put(self, request: web.Request) -> web.Response:
        key, q = request.match_info["key"], request.query
        existing = self._kv.get(key)
        value = await request.read()
        if len(value) > 512 * 1024:
            raise web.HTTPRequestEntityTooLarge(max_size=512 * 1024, actual_size=len(value))
        if "cas" in q and (existing.modify_index if existing else 0) != int(q["cas"]):
            return self._reply(False)  # cas=0: create only
        lock_index, session = (existing.lock_index, existing.session) if existing else (0, None)
        if acquire := q.get("acquire"):
            if acquire not in self._sessions:
                raise web.HTTPInternalServerError(text=f'invalid session "{acquire}"')
            if session not in (None, acquire) or self._lock_delays.get(key, 0) > self._now():
                return self._reply(False)
            if session is None:
                lock_index, session = lock_index + 1, acquire
        elif release := q.get("release"):
            if session != release:
                return self._reply(False)
            session = None
        index = self._kv_table = self._next()
        create_index = existing.create_index if existing else index
        flags = int(q.get("flags", "0"))
        self._kv[key] = _Entry(key, value, flags, create_index, index, lock_index, session)
        self._tombstones.pop(key, None)
        self._notify()
        return self._reply(True)

    async def _kv_delete(self, request: web.Request) -> web.Response:
        key, q = request.match_info["key"], request.query
        existing = self._kv.get(key)
        if "cas" in q and (existing is None or existing.modify_index != int(q["cas"])):
            return self._reply(False)
        doomed = [k for k in self._kv if _under(k, key, "recurse" in q)]
        if doomed:
            index = self._kv_table = self._next()
            for k in doomed:
                del self._kv[k]
                self._tombstones[k] = index
            self._notify()
        return self._reply(True)

    async def _session_create(self, request: web.Request) -> web.Response:
        body = _norm(await _body(request))
        node = str(body.get("node") or request.app[NODE])
        if (node, "serfHealth") not in self._checks:
            raise web.HTTPInternalServerError(text="Missing node registration")
        checks = body.get("checks", body.get("nodechecks"))
        checks = ["serfHealth"] if checks is None else [str(c) for c in checks]
        for cid in checks:
            check = self._checks.get((node, cid))
            if check is None:
                raise web.HTTPInternalServerError(text=f"Missing check '{cid}' registration")
            if check.status == CRITICAL:
                raise web.HTTPInternalServerError(text=f"Check '{cid}' is in critical state")
        ttl = str(body.get("ttl") or "")
        if ttl and parse_duration(ttl) and not 10 <= parse_duration(ttl) <= 86400:
            raise web.HTTPBadRequest(
                text=f"Invalid Session TTL '{ttl}', must be between [10s=24h0m0s]"
            )
        behavior = str(body.get("behavior") or "release")
        if behavior not in ("release", "delete"):
            raise web.HTTPBadRequest(text=f"Invalid Behavior setting '{behavior}'")
        delay = body.get("lockdelay", "15s")
        lock_delay = (
            float(delay)
            if isinstance(delay, int | float) and delay < 1000
            else parse_duration(delay)
        )
        s = _Session(str(uuid.uuid4()), str(body.get("name") or ""), node, checks, behavior, ttl,
                     lock_delay, self._next())  # fmt: skip
        s.deadline = self._session_deadline(s, self._now())
        self._sessions[s.id] = s
        self._session_table = s.index
        self._notify()
        return self._reply({"ID": s.id})

    async def _session_renew(self, request: web.Request) -> web.Response:
        s = self._sessions.get(request.match_info["id"])
        if s is None:
            raise web.HTTPNotFound(text=f"Session id '{request.match_info['id']}' not found")
        s.deadline = self._session_deadline(s, self._now())
        return self._reply([s.json()])

    async def _session_destroy(self, request: web.Request) -> web.Response:
        self._invalidate(request.match_info["id"])
        return self._reply(True)

    async def _session_info(self, request: web.Request) -> web.Response:
        index = await self._block(request, lambda: self._session_table)
        wanted = request.match_info.get("id")
        found = [s.json() for s in self._sessions.values() if wanted in (None, s.id)]
        return self._reply(found, index)

    async def _leader(self, request: web.Request) -> web.Response:
        return self._reply(f"{self.host}:8300")


def _under(name: str, key: str, prefix: bool) -> bool:
    return name == key or (prefix and name.startswith(key))


def _unmodelled(request: web.Request, *params: str) -> None:
    for name in params:
        if name in request.query:
            raise web.HTTPBadRequest(text=f"?{name} is not modelled by the Consul double")


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="Request decode failed") from None


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ValueError, TypeError) as error:  # bad durations, numbers, shapes: Consul says 400
        raise web.HTTPBadRequest(text=str(error)) from None
