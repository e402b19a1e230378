"""The middleware every Wharf API runs: request ids and OCI errors as the spec writes them."""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Iterator

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ocicore.errors import ErrorCode, OCIError
from ocicore.web.inflight import IN_FLIGHT

REQUEST_ID = web.RequestKey("request_id", str)
BYTES_IN = web.RequestKey("bytes_in", int)
STARTED = web.RequestKey("started", float)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_log = structlog.get_logger("wharf.http")


def _request_ids() -> Iterator[str]:
    """Unique ids, cheaply: a random per-process prefix and a counter."""
    prefix = uuid.uuid4().hex[:16]
    return (f"{prefix}{n:08x}" for n in itertools.count())


API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


def error_response(request: web.Request, error: OCIError) -> web.Response:
    return web.Response(
        status=error.status,
        body=error.body(),
        content_type="application/json",
        headers=error.headers,
    )


def oci_middleware() -> Middleware:
    """The middleware, with its own source of request ids (one per app, no global state)."""
    ids = _request_ids()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Give each request an id (the client's ``X-Request-Id`` if sane), render OCI errors.

        The request counts as in flight (see ``ocicore.web.serve``) until its handler
        returns, that is until its body has been read; aiohttp's own shutdown then waits for
        responses that are still being sent.
        """
        offered = request.headers.get("X-Request-Id", "")
        request_id = offered if _CLIENT_ID.match(offered) else next(ids)
        request[REQUEST_ID] = request_id
        request[STARTED] = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        in_flight = request.app.get(IN_FLIGHT)
        if in_flight is not None:
            in_flight.enter()
        try:
            response = await _respond(request, handler, request_id)
            if request.path.startswith("/v2"):
                response.headers.update(API_VERSION)
            return response
        finally:
            if in_flight is not None:
                in_flight.leave()

    return middleware


async def _respond(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        response = await handler(request)
    except OCIError as exc:
        response = error_response(request, exc)
    except web.HTTPMethodNotAllowed as exc:
        allowed = {"Allow": ",".join(sorted(exc.allowed_methods))}
        response = error_response(
            request, OCIError(ErrorCode.UNSUPPORTED, exc.method, headers=allowed)
        )
    except web.HTTPNotFound:
        # No route: the same JSON envelope as every other error, never aiohttp's plain text.
        response = error_response(request, OCIError(ErrorCode.NOT_FOUND, request.path[:200]))
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    except ConnectionResetError:
        raise  # the client left, or a handler cut a transfer on purpose: nothing to answer
    except Exception:
        _log.exception("unhandled error", path=request.path, method=request.method)
        response = web.json_response(
            {"errors": [{"code": "UNKNOWN", "message": "internal server error"}]}, status=500
        )
    response.headers["X-Request-Id"] = request_id
    return response
