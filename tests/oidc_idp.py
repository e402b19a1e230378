"""A real OpenID Provider for tests: oidc-provider-mock on a loopback port, in a thread.

Clients must register (so a wrong secret or redirect URL is refused as by a real provider)
and send a nonce. The "user clicks Authorize" step is one form POST, so no browser is needed:
the user is whichever ``sub`` the test names, with the claims it gave ``set_user``.

The mock is built on authlib's deprecated ``authlib.jose`` and legacy OIDC hooks, which warn
on import and on every token issued, in the server's thread. Modules using this helper set
``pytestmark = IDP_WARNINGS`` so that just those warnings do not fail the test.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import werkzeug.serving
from yarl import URL

IDP_WARNINGS = [
    pytest.mark.filterwarnings(
        "ignore:authlib.jose module is deprecated:authlib.deprecate.AuthlibDeprecationWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:The httpx module is deprecated:authlib.deprecate.AuthlibDeprecationWarning"
    ),
    pytest.mark.filterwarnings(r"ignore:get_jwt_config\(self, grant\) is deprecated"),
]


class MockIdp:
    """A running provider; ``issuer`` is its base URL (``http://127.0.0.1:<port>``)."""

    def __init__(self, server: werkzeug.serving.BaseWSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._stopped = False
        self.port = server.server_port
        self.issuer = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop listening (idempotent): new connections are refused from now on."""
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._thread.join(5)
            self._server.server_close()

    def register_client(self, redirect_url: str) -> tuple[str, str]:
        """A new client allowed to redirect to ``redirect_url``: its id and secret."""
        status, _, body = self._request(
            "POST", "/oauth2/clients", {"redirect_uris": [redirect_url]}
        )
        assert status == 201, body
        client = json.loads(body)
        return client["client_id"], client["client_secret"]

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        """Create or replace the user ``sub``; its claims go into the ID token."""
        status, _, body = self._request("PUT", f"/users/{sub}", claims)
        assert status == 204, body

    def sign_in(self, authorize_url: str, sub: str) -> URL:
        """Do what the browser does: open ``authorize_url``, authorize as ``sub`` in the
        provider's form, and return where the provider redirects to (our callback)."""
        target = urlsplit(authorize_url)
        assert f"{target.scheme}://{target.netloc}" == self.issuer, authorize_url
        path = f"{target.path}?{target.query}"
        status, _, body = self._request("GET", path)
        assert status == 200, body
        assert 'name="sub"' in body  # the provider's "Authorize" form
        status, location, body = self._request("POST", path, form={"sub": sub})
        assert status == 302, body
        return URL(location)

    def id_token(self, client: tuple[str, str], redirect_url: str, sub: str, nonce: str) -> str:
        """A genuine ID token for ``client``, obtained without ``OidcProvider``."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client[0],
                "redirect_uri": redirect_url,
                "scope": "openid profile email",
                "state": "s",
                "nonce": nonce,
            }
        )
        code = self.sign_in(f"{self.issuer}/oauth2/authorize?{query}", sub).query["code"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_url}
        basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
        status, _, body = self._request("POST", "/oauth2/token", form=form, basic=basic)
        assert status == 200, body
        token: str = json.loads(body)["id_token"]
        return token

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        basic: str = "",
    ) -> tuple[int, str, str]:
        """Status, Location header and body of one request (never follows redirects)."""
        headers, body = {"Authorization": f"Basic {basic}"} if basic else {}, None
        if payload is not None:
            headers["Content-Type"], body = "application/json", json.dumps(payload)
        elif form is not None:
            headers["Content-Type"], body = "application/x-www-form-urlencoded", urlencode(form)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Location", ""), response.read().decode()
        finally:
            connection.close()


@contextmanager
def running_idp(*, token_max_age: timedelta = timedelta(hours=1)) -> Iterator[MockIdp]:
    """A provider for the duration of the block; ``token_max_age`` sets ID token lifetime."""
    import oidc_provider_mock  # noqa: PLC0415 - warns on import: only under IDP_WARNINGS

    app = oidc_provider_mock.app(
        require_client_registration=True,
        require_nonce=True,
        access_token_max_age=token_max_age,
    )
    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    idp = MockIdp(server, thread)
    try:
        yield idp
    finally:
        idp.stop()
