"""A real OpenLDAP ``slapd`` on a loopback port, configured and seeded by the tests themselves.

It runs as whoever runs the tests (root in CI, anyone elsewhere): everything it touches lives
in its own temporary directory and it listens on an unprivileged port, so it needs no
``-u``/``-g``. It is configured like a typical company directory: a service account that may
read, users who may only bind, and ``allow bind_anon_dn`` (unauthenticated binds succeed, as
they do on many servers) so the tests prove that Wharf, not the server, refuses empty passwords.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from origin.auth.ldap import LdapConfig

with warnings.catch_warnings():  # pyasn1 deprecations, as in origin.auth.ldap
    warnings.filterwarnings("ignore", "(tag|type)Map is deprecated", DeprecationWarning)
    from ldap3 import HASHED_SALTED_SHA, MODIFY_DELETE, NONE, Connection, Server
    from ldap3.utils.dn import escape_rdn
    from ldap3.utils.hashed import hashed

SUFFIX = "dc=wharf,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ADMIN = f"cn=admin,{SUFFIX}"
READER = f"cn=reader,{SUFFIX}"
SCHEMAS = ("core", "cosine", "inetorgperson")
MODULES = Path("/usr/lib/ldap")


def _slapd() -> str:
    found = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("slapd is not installed (apt-get install slapd ldap-utils)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlapdServer:
    def __init__(self) -> None:
        self.admin_password = secrets.token_urlsafe(16)
        self.reader_password = secrets.token_urlsafe(16)
        self.port = 0
        self.url = ""
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SlapdServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="wharf-slapd-"))
        (self._dir / "data").mkdir()
        conf = self._dir / "slapd.conf"
        conf.write_text(self._config())
        conf.chmod(0o600)
        for _ in range(3):  # the free port may be taken again before slapd binds it
            self.port = _free_port()
            self.url = f"ldap://127.0.0.1:{self.port}"
            if self._launch(conf, time.monotonic() + timeout):
                self._seed()
                return
            self._terminate()
        raise RuntimeError(f"slapd did not start:\n{self.log()[-4000:]}")

    def _config(self) -> str:
        assert self._dir is not None
        lines = [f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS]
        lines += [f"pidfile {self._dir / 'slapd.pid'}", f"argsfile {self._dir / 'slapd.args'}"]
        if (MODULES / "back_mdb.so").exists():  # Debian builds backends as modules
            lines += [f"modulepath {MODULES}", "moduleload back_mdb"]
        lines += [
            "allow bind_anon_dn",
            "database mdb",
            f'suffix "{SUFFIX}"',
            f'rootdn "{ADMIN}"',
            f"rootpw {self.admin_password}",
            f"directory {self._dir / 'data'}",
            "dbnosync",  # a throwaway directory: no fsync per write
            "access to attrs=userPassword by self write by anonymous auth by * none",
            f'access to * by dn.exact="{READER}" read by self read by * none',
        ]
        return "\n".join(lines) + "\n"

    def _launch(self, conf: Path, deadline: float) -> bool:
        assert self._dir is not None
        with (self._dir / "slapd.log").open("ab") as log:
            # -d keeps slapd in the foreground, so this process is slapd and can be killed.
            self._proc = subprocess.Popen(
                [_slapd(), "-f", str(conf), "-h", f"{self.url}/", "-d", "0"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:  # a bare TCP probe first: ldap3 leaks the socket of a refused connection
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.01)
                continue
            with self._admin():
                return True
        return False

    def log(self) -> str:
        path = self._dir / "slapd.log" if self._dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        """Stop slapd and remove its files; safe to call more than once."""
        self._terminate()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _terminate(self) -> None:
        """SIGTERM, then SIGKILL if slapd has not exited within 5 s; always reaped."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    @contextmanager
    def _admin(self) -> Iterator[Connection]:
        server = Server(self.url, get_info=NONE, connect_timeout=2)
        conn = Connection(server, ADMIN, self.admin_password, receive_timeout=5)
        try:
            conn.open()
            if not conn.bind():
                raise RuntimeError(f"admin bind: {conn.result}")
            yield conn
        finally:
            conn.unbind()
            if conn.socket is not None:
                conn.socket.close()

    def _add(self, conn: Connection, dn: str, attributes: dict[str, object]) -> None:
        if not conn.add(dn, attributes=attributes):
            raise RuntimeError(f"add {dn}: {conn.result}")

    def _set_password(self, conn: Connection, dn: str, password: str) -> None:
        # The password modify operation (RFC 3062): slapd stores the password salted and hashed.
        if not conn.extend.standard.modify_password(dn, new_password=password):
            raise RuntimeError(f"password of {dn}: {conn.result}")

    def _seed(self) -> None:
        with self._admin() as conn:
            self._add(conn, SUFFIX, {"objectClass": ["dcObject", "organization"], "o": "Wharf"})
            self._add(conn, PEOPLE, {"objectClass": "organizationalUnit"})
            self._add(conn, GROUPS, {"objectClass": "organizationalUnit"})
            reader = {
                "objectClass": ["applicationProcess", "simpleSecurityObject"],
                "cn": "reader",
                "userPassword": hashed(HASHED_SALTED_SHA, self.reader_password),
            }
            self._add(conn, READER, reader)

    def user_dn(self, uid: str) -> str:
        return f"uid={escape_rdn(uid)},{PEOPLE}"

    def add_user(self, uid: str, password: str, mail: str | None = None) -> str:
        attributes: dict[str, object] = {
            "objectClass": "inetOrgPerson",
            "uid": uid,
            "cn": uid,
            "sn": uid,
        }
        if mail is not None:
            attributes["mail"] = mail
        dn = self.user_dn(uid)
        with self._admin() as conn:
            self._add(conn, dn, attributes)
            self._set_password(conn, dn, password)
        return dn

    def set_password(self, uid: str, password: str) -> None:
        with self._admin() as conn:
            self._set_password(conn, self.user_dn(uid), password)

    def add_group(self, cn: str, member_uids: list[str]) -> str:
        dn = f"cn={escape_rdn(cn)},{GROUPS}"
        members = [self.user_dn(uid) for uid in member_uids] or [ADMIN]  # member is required
        with self._admin() as conn:
            self._add(conn, dn, {"objectClass": "groupOfNames", "cn": cn, "member": members})
        return dn

    def remove_member(self, cn: str, uid: str) -> None:
        dn = f"cn={escape_rdn(cn)},{GROUPS}"
        with self._admin() as conn:
            if not conn.modify(dn, {"member": [(MODIFY_DELETE, [self.user_dn(uid)])]}):
                raise RuntimeError(f"remove {uid} from {cn}: {conn.result}")

    def config(self, **overrides: Any) -> LdapConfig:
        """A provider configuration for this server, searching as the read-only account."""
        assert self.url, "slapd is not running"
        base = LdapConfig(
            url=self.url,
            bind_dn=READER,
            bind_password=self.reader_password,
            user_base=PEOPLE,
            group_base=GROUPS,
            timeout_seconds=2.0,
        )
        return replace(base, **overrides)
