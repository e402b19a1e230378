"""Users from an LDAP directory: find the entry, bind as it, read its groups.

A service account searches for the user's entry; the password check is a bind *as that entry*,
so the directory alone judges the password and we never read or hash it. ldap3 is synchronous,
so each login runs in a thread.

Two classic holes are closed before LDAP is ever asked: an empty password (LDAP calls a simple
bind with a DN and no password an "unauthenticated bind" and many servers answer it with
success) and filter injection (the name is escaped, so ``*`` or ``)(uid=*`` match nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import warnings
from dataclasses import dataclass, field
from typing import Any

from origin.auth.identity import ExternalIdentity

with warnings.catch_warnings():
    # ldap3 2.9.1, the latest, imports pyasn1 names that pyasn1 0.6 deprecates: harmless, but
    # a DeprecationWarning at import (an error wherever warnings are errors, as in our tests).
    warnings.filterwarnings("ignore", "(tag|type)Map is deprecated", DeprecationWarning)
    from ldap3 import NONE, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import LDAPException, LDAPSASLPrepError
    from ldap3.utils.conv import escape_filter_chars

MAX_NAME_LENGTH = 256
MAX_PASSWORD_LENGTH = 1024
# Bind results that mean "not this password / not this account", as opposed to a broken server.
_REFUSED = frozenset({48, 49, 50, 53})  # inappropriateAuth, invalidCredentials, access, unwilling
_SEARCH_OK = frozenset({0, 4})  # success, sizeLimitExceeded (more than one match: refused later)


@dataclass(frozen=True, slots=True)
class LdapConfig:
    url: str  # ldap://host:port or ldaps://host:port
    bind_dn: str  # the service account that searches
    bind_password: str = field(repr=False)  # never in a log line
    user_base: str
    user_filter: str = "(uid={name})"  # {name} is replaced by the escaped login name
    group_base: str = ""  # "" = no group lookup
    group_filter: str = "(member={dn})"  # {dn} is replaced by the escaped user DN
    group_name_attribute: str = "cn"
    email_attribute: str = "mail"
    start_tls: bool = False
    timeout_seconds: float = 5.0


class LdapUnavailable(Exception):
    """The directory could not answer (down, unreachable, service account refused).

    Distinct from a wrong password so that callers can say "try later" instead of "denied"."""


class LdapProvider:
    def __init__(self, config: LdapConfig) -> None:
        self.config = config
        # ldap3's own default is not to verify certificates at all.
        self._server = Server(
            config.url,
            get_info=NONE,
            connect_timeout=config.timeout_seconds,
            tls=Tls(validate=ssl.CERT_REQUIRED),
        )

    async def authenticate(self, name: str, password: str) -> ExternalIdentity | None:
        """The identity for a name and password, None if refused; LdapUnavailable if LDAP is."""
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            return None
        if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
            return None
        return await asyncio.to_thread(self._authenticate, name, password)

    def _connect(self, user: str, password: str) -> Connection:
        return Connection(
            self._server,
            user=user,
            password=password,
            read_only=True,
            auto_referrals=False,  # a referral must not carry a password to another host
            receive_timeout=math.ceil(self.config.timeout_seconds),  # ldap3 needs whole seconds
            raise_exceptions=False,
        )

    def _authenticate(self, name: str, password: str) -> ExternalIdentity | None:
        c = self.config
        service = self._connect(c.bind_dn, c.bind_password)
        try:
            self._open(service)
            if not service.bind():
                raise LdapUnavailable(f"service bind failed: {service.result['description']}")
            query = c.user_filter.replace("{name}", escape_filter_chars(name))
            users = self._search(service, c.user_base, query, c.email_attribute, limit=2)
            if len(users) != 1:
                return None
            dn, emails = users[0]
            if not self._password_ok(dn, password):
                return None
            groups: set[str] = set()
            if c.group_base:
                query = c.group_filter.replace("{dn}", escape_filter_chars(dn))
                for _, names in self._search(service, c.group_base, query, c.group_name_attribute):
                    groups.update(names)
            email = emails[0] if emails else None
            return ExternalIdentity("ldap", name.lower(), email, frozenset(groups))
        except (LDAPException, OSError) as exc:
            # The type names the failure; the text never holds the password (it is never in it).
            raise LdapUnavailable(f"LDAP {c.url} failed: {type(exc).__name__}") from exc
        finally:
            _close(service)

    def _open(self, connection: Connection) -> None:
        connection.open()
        if self.config.start_tls and not connection.start_tls():
            raise LdapUnavailable(f"StartTLS failed: {connection.result['description']}")

    def _password_ok(self, dn: str, password: str) -> bool:
        user = self._connect(dn, password)
        try:
            self._open(user)
            try:
                if user.bind():
                    return True
            except LDAPSASLPrepError:  # ldap3 prepares passwords (RFC 4013): this one cannot be
                return False
            if user.result["result"] in _REFUSED:
                return False
            raise LdapUnavailable(f"user bind failed: {user.result['description']}")
        finally:
            _close(user)

    def _search(
        self, connection: Connection, base: str, query: str, attribute: str, limit: int = 0
    ) -> list[tuple[str, list[str]]]:
        """(DN, values of the one attribute asked for) of each entry found."""
        connection.search(
            base,
            query,
            SUBTREE,
            attributes=[attribute],
            size_limit=limit,
            time_limit=math.ceil(self.config.timeout_seconds),
        )
        if connection.result["result"] not in _SEARCH_OK:
            raise LdapUnavailable(f"search failed: {connection.result['description']}")
        return [
            (entry["dn"], _values(entry["raw_attributes"]))
            for entry in connection.response or ()
            if entry["type"] == "searchResEntry"
        ]


def _values(raw: Any) -> list[str]:
    # Only one attribute was asked for; the server may name it differently (an alias, another
    # case), so every value returned is taken rather than looked up by the name we sent.
    return [value.decode("utf-8", "replace") for values in raw.values() for value in values]


def _close(connection: Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):  # the server went away mid-conversation
        connection.unbind()
    if connection.socket is not None:
        connection.socket.close()  # ldap3 leaves the socket of a failed connect() open
