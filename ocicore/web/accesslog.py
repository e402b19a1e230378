"""One canonical log line and one metrics observation per request, once the last byte is sent."""

from __future__ import annotations

from time import perf_counter

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ocicore.web.metrics import METRICS
from ocicore.web.middleware import BYTES_IN, REQUEST_ID, STARTED

_log = structlog.get_logger("wharf.access")


def route_of(request: BaseRequest) -> str:
    if isinstance(request, web.Request):
        resource = request.match_info.route.resource
        if resource is not None:
            return resource.canonical
    return "unmatched"


class AccessLogger(AbstractAccessLogger):
    """Pass as ``access_log_class``; logs through structlog, never headers or query strings."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        route = route_of(request)
        received = request.get(BYTES_IN) or request.content_length or 0
        sent = response.content_length or 0
        started = request.get(STARTED)
        if started is not None:
            time = perf_counter() - started
        app = request.app if isinstance(request, web.Request) else None
        if app is not None and METRICS in app:
            app[METRICS].observe(route, request.method, response.status, time, received, sent)
        if route in ("/metrics", "/healthz", "/readyz"):
            return
        _log.info(
            "request",
            request_id=request.get(REQUEST_ID),
            method=request.method,
            path=request.path,
            route=route,
            status=response.status,
            duration_ms=round(time * 1000, 3),
            bytes_in=received,
            bytes_out=sent,
            remote=request.remote,
        )
