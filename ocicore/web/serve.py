"""Serving an app until SIGTERM, then draining: requests in flight finish, bodies included.

aiohttp's own graceful shutdown stops reading from connections as soon as it begins, so an
upload whose body is still arriving would hang until the shutdown timeout and then fail. Here
the listening socket closes first, readiness turns 503, and the process waits for every
handler in flight to return (its request body read) before aiohttp's cleanup runs, which in
turn waits for the responses still being sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Sequence

from aiohttp import web

from ocicore.web.accesslog import AccessLogger
from ocicore.web.health import READINESS
from ocicore.web.inflight import IN_FLIGHT, InFlight

# What to do when draining begins (a list the app's contexts append to).
ON_DRAIN = web.AppKey("on_drain", list[Callable[[], None]])


async def serve(app: web.Application, sock: socket.socket, shutdown_timeout: float) -> None:
    """Serve on ``sock`` until SIGTERM or SIGINT, then drain within ``shutdown_timeout``."""
    await serve_all([(app, sock)], shutdown_timeout)


async def serve_all(
    apps: Sequence[tuple[web.Application, socket.socket]], shutdown_timeout: float
) -> None:
    """Several apps in one process, started in order (a later one may need an earlier one
    at its start), drained together, cleaned up in reverse order."""
    runners: list[tuple[web.Application, web.AppRunner, web.SockSite]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        for app, sock in apps:
            app.setdefault(IN_FLIGHT, InFlight())
            runner = web.AppRunner(
                app,
                access_log_class=AccessLogger,
                handle_signals=False,
                shutdown_timeout=shutdown_timeout,
            )
            await runner.setup()
            site = web.SockSite(runner, sock)
            await site.start()
            runners.append((app, runner, site))
        await stop.wait()
        for app, _, site in runners:
            if READINESS in app:
                app[READINESS].draining = True
            for callback in app.get(ON_DRAIN, []):
                callback()  # e.g. answer long polls now: they would hold the drain up
            await site.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(shutdown_timeout):
                await asyncio.gather(*(app[IN_FLIGHT].wait_idle() for app, _, _ in runners))
    finally:
        for _, runner, _ in reversed(runners):
            await runner.cleanup()
