"""A real, private OpenLDAP server for the LDAP federation tests.

The module fixture starts /usr/sbin/slapd as a child process with its own slapd.conf and mdb
database in a temporary directory, listening only on a free 127.0.0.1 port (the system slapd
and /etc/ldap/slapd.d are never touched), seeds a small directory and kills slapd and removes
the directory at the end. Without slapd the tests skip, except in CI where they fail.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest

SLAPD = Path("/usr/sbin/slapd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

SUFFIX = "dc=example,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret"
SERVICE_DN = f"cn=reader,{SUFFIX}"
SERVICE_PW = "reader-secret"
# alice's password is stored as {SSHA}, the others' in plain text: slapd accepts both.
ALICE_PW = "alice-pw"
BOB_PW = "bob-pw"
CAROL_PW = "carol-pw"
GROUP_ROLES = {"platform-admins": "tenant-admin", "developers": "project-member"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


SLAPD_CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema

pidfile {root}/slapd.pid
argsfile {root}/slapd.args
modulepath {modules}
moduleload back_mdb

database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {root}/db

access to attrs=userPassword
  by self =xw
  by anonymous auth
  by * none
access to *
  by users read
  by * none
"""


class Slapd:
    """One throw-away slapd on 127.0.0.1, configured by a slapd.conf in its own directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cp-slapd-", dir="/tmp"))
        self.log = self.root / "slapd.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def start(self) -> None:
        (self.root / "db").mkdir()
        conf = self.root / "slapd.conf"
        conf.write_text(
            SLAPD_CONF.format(
                schema=SCHEMA_DIR,
                modules=MODULE_DIR,
                root=self.root,
                suffix=SUFFIX,
                rootdn=ROOT_DN,
                rootpw=ROOT_PW,
            )
        )
        # A port picked by binding to 0 may be taken again before slapd binds it: retry.
        for _ in range(3):
            self.port = _free_port()
            with self.log.open("ab") as log:
                # -d 0: stay in the foreground (a child we can kill), no debug output.
                self.proc = subprocess.Popen(
                    [str(SLAPD), "-f", str(conf), "-h", f"{self.url}/", "-d", "0"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready(timeout=10):
                return
            self.stop()
        raise RuntimeError(f"slapd did not start:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                conn = self.admin()
            except ldap3.core.exceptions.LDAPException:
                time.sleep(0.05)
                continue
            conn.unbind()
            return True
        return False

    def admin(self) -> ldap3.Connection:
        server = ldap3.Server(self.url, connect_timeout=2, get_info=ldap3.NONE)
        return ldap3.Connection(
            server, ROOT_DN, ROOT_PW, auto_bind=ldap3.AUTO_BIND_NO_TLS, receive_timeout=5
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _add(conn: ldap3.Connection, dn: str, classes: list[str], attrs: dict[str, Any]) -> None:
    assert conn.add(dn, classes, attrs), (dn, conn.result)


def seed(server: Slapd) -> None:
    conn = server.admin()
    try:
        _add(conn, SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
        _add(conn, PEOPLE, ["organizationalUnit"], {"ou": "people"})
        _add(conn, GROUPS, ["organizationalUnit"], {"ou": "groups"})
        _add(
            conn,
            SERVICE_DN,
            ["organizationalRole", "simpleSecurityObject"],
            {"cn": "reader", "userPassword": SERVICE_PW},
        )
        people = {
            "alice": ("Alice Liddell", "alice@example.org", _ssha(ALICE_PW)),
            "bob": ("Bob Builder", "bob@example.org", BOB_PW),
            "carol": ("Carol Groupless", None, CAROL_PW),
        }
        for uid, (cn, mail, pw) in people.items():
            attrs: dict[str, Any] = {"uid": uid, "cn": cn, "sn": cn.split()[-1], "userPassword": pw}
            if mail:
                attrs["mail"] = mail
            _add(conn, f"uid={uid},{PEOPLE}", ["inetOrgPerson"], attrs)
        # Two entries with the same uid: an ambiguous login must not pick one.
        for ou in ("a", "b"):
            _add(conn, f"ou={ou},{PEOPLE}", ["organizationalUnit"], {"ou": ou})
            _add(
                conn,
                f"uid=twin,ou={ou},{PEOPLE}",
                ["inetOrgPerson"],
                {"uid": "twin", "cn": f"Twin {ou}", "sn": "Twin", "userPassword": "twin-pw"},
            )
        _add(
            conn,
            f"cn=platform-admins,{GROUPS}",
            ["groupOfNames"],
            {"cn": "platform-admins", "member": [f"uid=alice,{PEOPLE}"]},
        )
        _add(
            conn,
            f"cn=developers,{GROUPS}",
            ["groupOfNames"],
            {"cn": "developers", "member": [f"uid=bob,{PEOPLE}"]},
        )
        # An RFC 2307 group lists members by uid, not DN (the memberUid branch of the filter).
        _add(
            conn,
            f"cn=ops,{GROUPS}",
            ["posixGroup"],
            {"cn": "ops", "gidNumber": "5000", "memberUid": ["alice"]},
        )
    finally:
        conn.unbind()


def _require_slapd() -> None:
    if SLAPD.is_file() and (SCHEMA_DIR / "core.schema").is_file():
        return
    message = (
        f"{SLAPD} (with {SCHEMA_DIR}) is missing: install the Debian packages slapd and "
        "ldap-utils (`make deps-test`, i.e. scripts/install-system.sh --test)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="package")
def slapd() -> Iterator[Slapd]:
    _require_slapd()
    server = Slapd()
    try:
        server.start()
        seed(server)
        yield server
    finally:
        server.close()
