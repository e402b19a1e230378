"""One canonical log line and one metrics observation per request, once the last byte is sent.

The line has the shape of every other log line (see ``ocicore.web.logs``) but skips
structlog's processor chain: it is written once per request, and rendering it directly with
orjson costs a few microseconds instead of a few tens.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ocicore.web.metrics import METRICS
from ocicore.web.middleware import BYTES_IN, REQUEST_ID, STARTED

_QUIET_ROUTES = frozenset({"/metrics", "/healthz", "/readyz"})
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z


def _routed(request: BaseRequest) -> web.Request | None:
    """The request if it reached the router; aiohttp answers some (malformed) ones before."""
    if isinstance(request, web.Request) and request.get(STARTED) is not None:
        return request
    return None


def route_of(request: web.Request | None) -> str:
    """The route's pattern (a bounded label), or "unmatched"."""
    resource = request.match_info.route.resource if request is not None else None
    return resource.canonical if resource is not None else "unmatched"


def write_line(fields: dict[str, Any]) -> None:
    fields["level"] = "info"
    fields["timestamp"] = datetime.now(UTC)
    out = sys.stderr.buffer
    out.write(orjson.dumps(fields, option=_OPTIONS))
    out.flush()


class AccessLogger(AbstractAccessLogger):
    """Pass as ``access_log_class``; never logs headers or query strings (they carry tokens)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        routed = _routed(request)
        route = route_of(routed)
        received = request.get(BYTES_IN, 0)  # what was read, not what was announced
        # A HEAD's Content-Length describes a body it does not send.
        sent = 0 if request.method == "HEAD" else (response.content_length or 0)
        if routed is not None:
            time = perf_counter() - routed[STARTED]
            if METRICS in routed.app:
                metrics = routed.app[METRICS]
                metrics.observe(route, request.method, response.status, time, received, sent)
        if route in _QUIET_ROUTES or not logging.getLogger("wharf.access").isEnabledFor(
            logging.INFO
        ):
            return
        write_line(
            {
                "request_id": request.get(REQUEST_ID),
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "bytes_in": received,
                "bytes_out": sent,
                "remote": request.remote,
                "event": "request",
                "logger": "wharf.access",
            }
        )
