"""Liveness (``/healthz``) and readiness (``/readyz``) endpoints.

Readiness runs the app's checks and turns 503 as soon as shutdown begins, so a load balancer
stops sending new requests while the ones in flight finish.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass
class Readiness:
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    draining: bool = False


READINESS = web.AppKey("readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    if readiness.draining:
        return web.json_response({"status": "draining"}, status=503)
    failures: dict[str, str] = {}
    for name, check in readiness.checks.items():
        try:
            await check()
        except Exception as exc:  # a failed check is reported, not raised
            failures[name] = f"{type(exc).__name__}: {exc}"
    if failures:
        return web.json_response({"status": "unready", "failures": failures}, status=503)
    return web.json_response({"status": "ready"})


async def _drain(app: web.Application) -> None:
    app[READINESS].draining = True


def add_health_routes(app: web.Application, readiness: Readiness) -> None:
    app[READINESS] = readiness
    app.on_shutdown.append(_drain)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
