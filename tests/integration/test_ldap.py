"""LDAP logins against a real slapd that each test configures, seeds and starts (~50 ms)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator

import pytest

from origin.auth.identity import ExternalIdentity
from origin.auth.ldap import LdapProvider, LdapUnavailable
from tests.ldap_server import SlapdServer

# Nothing listens here: a provider pointed at it fails loudly if it ever talks to LDAP.
NOWHERE = "ldap://127.0.0.1:9"


@pytest.fixture
def slapd() -> Iterator[SlapdServer]:
    with SlapdServer() as server:
        server.add_user("alice", "alice's password", "alice@wharf.test")
        server.add_user("bob", "bob's password")
        server.add_group("developers", ["alice", "bob"])
        server.add_group("operators", ["alice"])
        yield server


async def test_correct_password_gives_the_identity(slapd: SlapdServer) -> None:
    ldap = LdapProvider(slapd.config())
    alice = ExternalIdentity(
        "ldap", "alice", "alice@wharf.test", frozenset({"developers", "operators"})
    )
    assert await ldap.authenticate("alice", "alice's password") == alice
    assert await ldap.authenticate("Alice", "alice's password") == alice  # uid ignores case
    bob = await ldap.authenticate("bob", "bob's password")
    assert bob == ExternalIdentity("ldap", "bob", None, frozenset({"developers"}))
    no_groups = LdapProvider(slapd.config(group_base=""))
    found = await no_groups.authenticate("alice", "alice's password")
    assert found is not None
    assert found.groups == frozenset()


async def test_wrong_password_or_unknown_user_is_refused(slapd: SlapdServer) -> None:
    ldap = LdapProvider(slapd.config())
    assert await ldap.authenticate("alice", "bob's password") is None
    assert await ldap.authenticate("alice", "alice's password ") is None
    assert await ldap.authenticate("carol", "alice's password") is None
    # ldap3 cannot send this one (SASLprep forbids control characters): still just "no".
    assert await ldap.authenticate("alice", "alice's\x00password") is None


async def test_empty_password_is_refused_though_the_directory_would_accept_it(
    slapd: SlapdServer,
) -> None:
    # The hole: a simple bind with a DN and no password is an "unauthenticated bind", and
    # servers that allow it (this one does, as many do) answer it with success.
    ldapwhoami = shutil.which("ldapwhoami")
    assert ldapwhoami, "ldapwhoami is missing (apt-get install ldap-utils)"
    dn = slapd.user_dn("alice")
    process = await asyncio.create_subprocess_exec(
        *(ldapwhoami, "-x", "-H", slapd.url, "-D", dn, "-w", ""),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert (process.returncode, out.strip()) == (0, b"anonymous"), err

    assert await LdapProvider(slapd.config()).authenticate("alice", "") is None
    # ... refused before LDAP is asked: a provider that cannot reach LDAP says no, not "down".
    assert await LdapProvider(slapd.config(url=NOWHERE)).authenticate("alice", "") is None


async def test_bad_names_are_refused_before_asking_ldap(slapd: SlapdServer) -> None:
    nowhere = LdapProvider(slapd.config(url=NOWHERE))
    for name in ("", "alice\x00", "alice\n", "al\tice", "alice\x7f", "a" * 257):
        assert await nowhere.authenticate(name, "alice's password") is None
    with pytest.raises(LdapUnavailable):  # while an ordinary name does go to LDAP
        await nowhere.authenticate("a" * 256, "alice's password")


async def test_filter_injection_matches_nobody(slapd: SlapdServer) -> None:
    ldap = LdapProvider(slapd.config())
    # Unescaped, "ali*" would make the filter (uid=ali*): it matches alice and only alice, so
    # her password would log in under any such pattern. A filter written that way shows it.
    wildcard = LdapProvider(slapd.config(user_filter="(uid=ali*)"))
    assert await wildcard.authenticate("anything", "alice's password") is not None
    for name in ("ali*", "*", "alice)(uid=*", "*)(|(uid=*", "alice)", "alice\\", "(uid=alice)"):
        assert await ldap.authenticate(name, "alice's password") is None, name
    # Escaped, not forbidden: a name made of filter syntax is just a name.
    slapd.add_user("o*neil(x)", "neil's password")
    found = await ldap.authenticate("o*neil(x)", "neil's password")
    assert found is not None
    assert found.name == "o*neil(x)"
    assert await ldap.authenticate("o*", "neil's password") is None


async def test_more_than_one_match_is_refused(slapd: SlapdServer) -> None:
    slapd.add_user("carol", "carol's password", "shared@wharf.test")
    slapd.add_user("dave", "dave's password", "shared@wharf.test")
    by_mail = LdapProvider(slapd.config(user_filter="(&(objectClass=inetOrgPerson)(mail={name}))"))
    assert await by_mail.authenticate("alice@wharf.test", "alice's password") is not None
    assert await by_mail.authenticate("shared@wharf.test", "carol's password") is None


async def test_a_password_change_in_ldap_takes_effect(slapd: SlapdServer) -> None:
    ldap = LdapProvider(slapd.config())
    slapd.set_password("alice", "a new password")
    assert await ldap.authenticate("alice", "alice's password") is None
    assert await ldap.authenticate("alice", "a new password") is not None


async def test_concurrent_logins(slapd: SlapdServer) -> None:
    ldap = LdapProvider(slapd.config())
    attempts = [("alice", "alice's password"), ("bob", "bob's password"), ("bob", "wrong")] * 10
    found = await asyncio.gather(*(ldap.authenticate(n, p) for n, p in attempts))
    assert [f.name if f else None for f in found] == ["alice", "bob", None] * 10


async def test_a_stopped_server_is_unavailable_not_a_wrong_password(slapd: SlapdServer) -> None:
    ldap = LdapProvider(slapd.config())
    assert await ldap.authenticate("alice", "alice's password") is not None
    slapd.stop()
    with pytest.raises(LdapUnavailable) as raised:
        await ldap.authenticate("alice", "alice's password")
    assert "alice's password" not in str(raised.value)


async def test_a_refused_service_account_is_unavailable(slapd: SlapdServer) -> None:
    ldap = LdapProvider(slapd.config(bind_password="not the service password"))
    with pytest.raises(LdapUnavailable, match="service bind") as raised:
        await ldap.authenticate("alice", "alice's password")
    assert "password" not in str(raised.value).replace("service bind", "")


async def test_a_silent_server_times_out(slapd: SlapdServer) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        ldap = LdapProvider(slapd.config(url=url, timeout_seconds=0.5))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LdapUnavailable):
            await ldap.authenticate("alice", "alice's password")
        assert loop.time() - started < 3
