"""Bearer-token enforcement for the Distribution API, the same at the origin and the edges.

Every ``/v2/`` request needs a token (anonymous ones too: the token endpoint hands those out
for public repositories). What a request needs follows from its route and method; a
missing, invalid or insufficient token gets ``401 UNAUTHORIZED`` with the challenge that tells
the client which scope to ask for, as Docker clients expect. Repository names are validated
first, so a malformed one is ``NAME_INVALID`` whoever asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ocicore.auth.tokens import Grant, TokenError, TokenVerifier, bearer_token
from ocicore.errors import ErrorCode, OCIError
from ocicore.names import validate_name

GRANT = web.RequestKey("grant", Grant)

# A web seed (BitTorrent BEP 19) cannot send headers: its short-lived token rides in the query
# string, and grants nothing but GET and HEAD of one blob of one repository.
SEED_PARAM = "wharf_seed"


def seed_resource(name: str, digest: str) -> str:
    """The ``blob`` resource name a web seed token grants ``pull`` on."""
    return f"{name}@{digest}"


@dataclass(frozen=True, slots=True)
class Need:
    """What a request needs: an action on a resource, or (no type) any valid token."""

    type: str = ""
    name: str = ""
    action: str = ""

    def scope(self) -> str | None:
        if not self.type:
            return None
        asked = "pull,push" if self.action == "push" else self.action  # pushing clients pull too
        return f"{self.type}:{self.name}:{asked}"


ANY_TOKEN = Need()


def _seed_need(request: web.Request) -> Need | None:
    """What a web seed request needs: GET or HEAD of a blob by digest."""
    resource = request.match_info.route.resource
    digest = request.match_info.get("digest")
    if (
        request.method not in ("GET", "HEAD")
        or resource is None
        or digest is None
        or not resource.canonical.endswith("/blobs/{digest}")
    ):
        return None
    return Need("blob", seed_resource(request.match_info["name"], digest), "pull")


def need_of(request: web.Request) -> Need | None:
    """What a request needs, from the route it matched (so the repository authorized is the
    one the handler serves); None for paths outside the registry API."""
    path = request.path
    if not path.startswith("/v2/"):
        return None
    if path == "/v2/_catalog":
        return Need("registry", "catalog", "*")
    name = request.match_info.get("name")
    if name is None:
        return ANY_TOKEN  # /v2/ itself, and unknown endpoints (404 for token holders)
    validate_name(name)
    resource = request.match_info.route.resource
    uploads = resource is not None and "/blobs/uploads" in resource.canonical
    if request.method == "DELETE" and not uploads:
        action = "delete"
    elif request.method in ("GET", "HEAD") and not uploads:
        action = "pull"
    else:
        action = "push"
    return Need("repository", name, action)


def bearer_middleware(
    verifier: Callable[[web.Application], TokenVerifier],
    realm: str | None,
    service: str,
    open_to_all: Callable[[web.Request, Need], bool] | None = None,
) -> Middleware:
    """Enforce tokens on ``/v2/``. ``realm`` is the token endpoint's URL (None: this host's
    ``/auth/token``); ``verifier`` finds the app's verifier (it may be built at startup);
    ``open_to_all`` names requests anyone may make without a token (an edge's public mirrors)."""

    def challenge(request: web.Request, need: Need, error: str | None) -> OCIError:
        url = realm or f"{request.scheme}://{request.host}/auth/token"
        parts = [f'realm="{url}"', f'service="{service}"']
        scope = need.scope()
        if scope is not None:
            parts.append(f'scope="{scope}"')
        if error is not None:
            parts.append(f'error="{error}"')
        return OCIError(
            ErrorCode.UNAUTHORIZED,
            need.scope(),
            headers={"WWW-Authenticate": "Bearer " + ",".join(parts)},
        )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        need = need_of(request)
        if need is None or (open_to_all is not None and open_to_all(request, need)):
            return await handler(request)
        token = bearer_token(request.headers.get("Authorization"))
        if token is None and SEED_PARAM in request.query:
            seed = _seed_need(request)
            if seed is not None:
                token, need = request.query[SEED_PARAM], seed
        if token is None:
            raise challenge(request, need, None)
        try:
            grant = verifier(request.app).verify(token)
        except TokenError:
            raise challenge(request, need, "invalid_token") from None
        if need.type and not grant.allows(need.type, need.name, need.action):
            raise challenge(request, need, "insufficient_scope")
        request[GRANT] = grant
        return await handler(request)

    return middleware
