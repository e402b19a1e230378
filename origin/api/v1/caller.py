"""Who is calling the admin API: Basic credentials, or a bearer token with ``api:v1:*``.

Registry tokens do not open the API: a token a CI job got to pull one repository must not let
it manage its owner's account. Basic sign-ins are throttled and audited like the token
endpoint's; a disabled account is refused even while its tokens live.
"""

from __future__ import annotations

from aiohttp import web

from ocicore.auth.tokens import TokenError, bearer_token
from ocicore.errors import ErrorCode, OCIError
from origin.admin.base import Caller
from origin.auth.policy import Actor
from origin.auth.token_endpoint import basic_credentials
from origin.keys import TOKENS, VERIFIER

API_SCOPE = ("api", "v1", "*")


def _unauthorized(detail: str) -> OCIError:
    return OCIError(
        ErrorCode.UNAUTHORIZED,
        detail,
        headers={"WWW-Authenticate": 'Basic realm="wharf", charset="UTF-8"'},
    )


async def caller(request: web.Request) -> Caller:
    header = request.headers.get("Authorization")
    tokens = request.app[TOKENS]
    credentials = basic_credentials(header)
    if credentials is not None:
        return Caller(await tokens.login(request, *credentials), request.remote)
    token = bearer_token(header)
    if token is None:
        raise _unauthorized("sign in with Basic credentials or an api:v1:* bearer token")
    try:
        grant = request.app[VERIFIER].verify(token)
    except TokenError as exc:
        raise _unauthorized(str(exc)) from None
    if not grant.subject or not grant.allows(*API_SCOPE):
        raise _unauthorized("the token does not carry the scope api:v1:*")
    account = await tokens.accounts.store.find_account(grant.subject)
    if account is None or account.disabled_at is not None:
        raise _unauthorized("the account is disabled or gone")
    return Caller(Actor(account.id, account.name, account.is_admin), request.remote)
