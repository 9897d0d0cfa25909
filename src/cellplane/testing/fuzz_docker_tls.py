"""The Docker-compatible endpoint over TLS with client certificates, fuzzed (issue 14).

`DockerTlsTarget` serves the endpoint as `DockerTarget` does, but with the listeners' real TLS
(`dockerapi.listeners.tls_context`: the server's certificate from Cellplane's CA, client
certificates requested, `CERT_OPTIONAL`, verified against Cellplane's root). Its callers are
*identities*: a client certificate of each fuzz caller role, issued through the server's CA as
`cellplane endpoint env` does (key and CSR here, `POST /v1/certificates`); a revoked one; an
expired one and one whose validity starts tomorrow (issued by the service layer at another
time); one from a foreign CA, one from a foreign key under the name of the tenant's
intermediate, a self-signed one; the host's (agent) certificate; one of a user disabled since; and no certificate. Each example
draws an identity, a bearer token to send with it or none (a real caller's or garbage), and the
same request as `fuzz_docker` (route, version prefix, ids, query, headers, body).

Checks, as `fuzz_docker`: no 5xx but 501, Docker's error shape, no traceback, a refused request
(4xx, or refused at the TLS handshake) leaves the database digest alone; an identity that must
be refused (revoked, expired, not yet valid, foreign, forged, self-signed, host, a disabled
user's, none), sent with no valid token, is answered 401 or 403 on every route, or refused at
the handshake, never anything else; and a project viewer (its certificate, or its token) gets no
2xx on a route that writes (both `refused_admitted`). What aiohttp's parser refuses before the
application sees it is counted apart, as there.

One more operation, `RAW garbage`: raw bytes on the TLS port (random bytes, a plain-HTTP request,
a truncated or whole ClientHello then silence, a TLS record header announcing 16 MiB, SSLv2's
hello) on a socket of its own; then a request with a valid certificate must succeed
(`listener_failures` if not), and nothing the listener answered may hold a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import strategies as st

from cellplane.dockerapi.listeners import tls_context
from cellplane.dockerapi.server import _READ_POSTS
from cellplane.identity import pki
from cellplane.identity.rbac import Principal
from cellplane.state.identity_models import User
from cellplane.testing.fuzz import CALLERS, FuzzServer
from cellplane.testing.fuzz_docker import (
    _PARAM,
    DockerTarget,
    _docker_error_shape,
    _Example,
    _examples,
    _parser_refusal,
    _request,
    operations,
)
from cellplane.testing.fuzz_web import (
    WebStats,
    looks_like_traceback,
    repeat,
    run_rounds,
    send,
)

__all__ = [
    "ADMITTED",
    "REFUSED",
    "DockerTlsTarget",
    "TlsStats",
    "client_hello",
    "fuzz_docker_tls",
    "garbage",
]

#: Certificates of a caller the endpoint serves (what it may do is its role's).
ADMITTED = tuple(f"cert:{c}" for c in CALLERS if c != "anonymous")
#: Identities that must be refused (401/403, or at the handshake) whatever the route.
REFUSED = (
    "cert:revoked",
    "cert:expired",
    "cert:not-yet-valid",
    "cert:foreign",
    "cert:forged-issuer",
    "cert:self-signed",
    "cert:host",
    "cert:disabled-user",
    "none",
)
#: Bearer tokens sent along with a certificate (None: no Authorization header).
_TOKENS: tuple[str | None, ...] = (None, None, None, None, *CALLERS[:-1], "garbage-token")
_RAW = "RAW garbage"
_DAY = 86400.0


@dataclass
class TlsStats(WebStats):
    #: Requests refused at the TLS handshake (a certificate that does not chain to the root).
    tls_refusals: int = 0
    #: A must-refuse identity (with no valid token) answered anything but 401/403.
    refused_admitted: int = 0
    #: The listener did not answer a valid request after raw garbage.
    listener_failures: int = 0
    #: Per identity, the answers' status counts ("tls" for a handshake refusal).
    identities: dict[str, dict[str, int]] = field(default_factory=dict)

    def identity(self, name: str, outcome: str) -> None:
        counts = self.identities.setdefault(name, {})
        counts[outcome] = counts.get(outcome, 0) + 1

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "tls_refusals": self.tls_refusals,
            "refused_admitted": self.refused_admitted,
            "listener_failures": self.listener_failures,
            "identities": {k: dict(sorted(v.items())) for k, v in sorted(self.identities.items())},
        }


def new_key_and_csr(subject: str) -> tuple[bytes, str]:
    """A new EC P-256 key (PEM) and a CSR for `subject`, as `cellplane.cli.certs` makes them
    for `endpoint env` (the CLI is not imported outside itself)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(subject))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _foreign(cn: str, issuer: x509.Name | None, *, self_signed: bool = False) -> tuple[str, str]:
    """(certificate chain PEM, key PEM) of a client certificate Cellplane's CA never issued:
    from a CA of its own (whose name is `issuer` when given), or self-signed."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = key if self_signed else ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(cn) if self_signed else (issuer or _name("Foreign Root CA"))
    chain = ""
    if not self_signed:
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        chain = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return leaf.public_bytes(serialization.Encoding.PEM).decode() + chain, key_pem


def client_hello() -> bytes:
    """The first flight of a TLS client (a whole ClientHello record)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):  # the server's answer never comes
        obj.do_handshake()
    return outgoing.read()


_HELLO = client_hello()


class DockerTlsTarget(DockerTarget):
    """The endpoint of `server`'s default project over the listeners' TLS, with a client
    (its own TLS context) per identity."""

    def __init__(self, server: FuzzServer) -> None:
        super().__init__(server)
        self.url = f"https://127.0.0.1:{self.port}"
        self.certs = server.dir / "fuzz-tls"
        self.clients: dict[str, httpx.Client] = {}
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.serials: dict[str, str] = {}

    async def _serve(self, app: web.Application) -> web.AppRunner:
        tls = tls_context(self.server.svc)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=tls).start()
        return runner

    def start(self) -> None:
        super().start()
        self.certs.mkdir(parents=True, exist_ok=True)
        self._identities()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()
        super().close()

    def plain_client(self) -> httpx.Client:
        return httpx.Client(verify=self.ssl_context(None))

    def ssl_context(self, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(pki.root_pem_path(self.server.svc.data_dir)))
        if cert is not None:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        return ctx

    def _write(self, name: str, chain: str, key: str | bytes) -> tuple[Path, Path]:
        stem = name.replace(":", "-")
        cert_path, key_path = self.certs / f"{stem}.pem", self.certs / f"{stem}.key"
        cert_path.write_text(chain)
        key_path.write_bytes(key if isinstance(key, bytes) else key.encode())
        key_path.chmod(0o600)
        return cert_path, key_path

    def _issue(self, caller: str) -> tuple[str, str, bytes]:
        """(serial, chain, key) of a client certificate for `caller`, as `endpoint env` gets
        one: its own key and CSR, signed by `POST /v1/certificates`."""
        headers = self.server.headers[caller]
        me = self.server._call("GET", "/v1/whoami", 200, headers=headers)
        key_pem, csr = new_key_and_csr(str(me["subject"]))
        body = {"csr": csr, "ttl_days": 1}
        issued = self.server._call("POST", "/v1/certificates", 201, json=body, headers=headers)
        return str(issued["serial"]), str(issued["chain"]), key_pem

    def _issued_at(self, caller: str, now: float, ttl_s: float) -> tuple[str, bytes]:
        """A certificate for `caller` issued as if the clock said `now`, valid `ttl_s`."""
        svc = self.server.svc
        token = self.server.headers[caller]["Authorization"].removeprefix("Bearer ")
        p: Principal = self.server.app.state.authenticator.authenticate(token)
        key_pem, csr = new_key_and_csr(p.subject)
        with svc.db.session() as s:
            out = pki.sign_user_csr(svc, s, p, csr, ttl_s, now=now)
        return str(out["chain"]), key_pem

    def _disabled(self) -> tuple[str, bytes]:
        """A certificate of the world's spare user, who is then disabled."""
        spare = self.server.ids["user"][0]
        self.server.headers["spare"] = self.server._token(spare)
        _, chain, key = self._issue("spare")
        with self.server.svc.db.session() as s:
            user = s.get(User, spare)
            assert user is not None
            user.disabled = True
        return chain, key

    def _identities(self) -> None:
        files: dict[str, tuple[Path, Path] | None] = {"none": None}
        for caller in CALLERS[:-1]:
            serial, chain, key = self._issue(caller)
            self.serials[caller] = serial
            files[f"cert:{caller}"] = self._write(f"cert:{caller}", chain, key)
        serial, chain, key = self._issue("project-member")
        self.server._call(
            "POST",
            f"/v1/certificates/{serial}/revoke",
            200,
            headers=self.server.headers["project-member"],
        )
        files["cert:revoked"] = self._write("cert:revoked", chain, key)
        # The CA signs only within its own validity (from a moment ago): a one-second
        # certificate, waited out below, is an expired one.
        issued = time.time()
        files["cert:expired"] = self._write(
            "cert:expired", *self._issued_at("project-member", issued, 1.0)
        )
        files["cert:not-yet-valid"] = self._write(
            "cert:not-yet-valid", *self._issued_at("project-member", issued + 2 * _DAY, _DAY)
        )
        member = self.server.user_ids["project-member"]
        files["cert:foreign"] = self._write("cert:foreign", *_foreign(member, None))
        authority = pki.ca(self.server.svc)
        intermediate = authority.tenant("default").cert.subject
        files["cert:forged-issuer"] = self._write(
            "cert:forged-issuer", *_foreign(member, intermediate)
        )
        files["cert:self-signed"] = self._write(
            "cert:self-signed", *_foreign(member, None, self_signed=True)
        )
        svc = self.server.svc
        files["cert:disabled-user"] = self._write("cert:disabled-user", *self._disabled())
        with svc.db.session() as s:
            host = pki.issue_host_certificate(
                svc, s, self.server.ids["host_id"][0], "fuzz-host", None
            )
        files["cert:host"] = self._write("cert:host", str(host["chain"]), str(host["key"]))
        time.sleep(max(0.0, issued + 1.5 - time.time()))
        for name, paths in files.items():
            self.contexts[name] = self.ssl_context(paths)
            self.clients[name] = httpx.Client(verify=self.contexts[name])

    def reconnect(self, identity: str) -> httpx.Client:
        """A new client for `identity` (after its connection was refused or dropped)."""
        self.clients[identity].close()
        self.clients[identity] = httpx.Client(verify=self.contexts[identity])
        return self.clients[identity]


@dataclass
class _TlsExample:
    identity: str
    token: str | None
    request: _Example


def _tls_examples(params: int) -> st.SearchStrategy[_TlsExample]:
    return st.builds(
        _TlsExample,
        identity=st.sampled_from((*ADMITTED, *REFUSED)),
        token=st.sampled_from(_TOKENS),
        request=_examples(params),
    )


def _tls_refusal(exc: httpx.TransportError) -> bool:
    """The server refused the handshake: a TLS alert (TLS 1.2: at connect; 1.3: at the first
    read, the client having finished its side), or the connection dropped there."""
    text = f"{exc!r} {exc.__cause__!r} {exc.__context__!r}".lower()
    return any(
        w in text
        for w in ("certificate", "alert", "ssl", "tls", "connection reset", "disconnected", "eof")
    )


def _check(
    target: DockerTlsTarget, key: str, method: str, path: str, tex: _TlsExample, stats: TlsStats
) -> None:
    server = target.server
    client = target.clients[tex.identity]
    ex = dataclasses.replace(tex.request, caller=tex.token or "anonymous")
    try:
        request = _request(target, client, method, path, ex)
    except (httpx.InvalidURL, UnicodeEncodeError, ValueError):
        return
    before = server.digest()
    where = f"{tex.identity} token={tex.token}: {method} {request.url} body={ex.body[0]}"
    must_refuse = tex.identity in REFUSED and tex.token in (None, "garbage-token")
    # Who the endpoint should take the caller for: the token's, else the certificate's.
    acting = tex.token if tex.token is not None else tex.identity.removeprefix("cert:")
    write = method not in ("GET", "HEAD") and not path.endswith(_READ_POSTS)
    try:
        answer = send(client, request)
    except httpx.LocalProtocolError:
        return
    except httpx.TransportError as exc:
        target.reconnect(tex.identity)
        stats.count(key, 0, reached=False)
        stats.identity(tex.identity, "tls")
        if tex.identity in ADMITTED or tex.identity in ("none", "cert:revoked", "cert:host"):
            stats.record("transport-error", key, 0, f"{where}\n{exc!r}")
        else:
            stats.tls_refusals += 1
        if server.digest() != before:
            stats.state_changes += 1
            stats.record("state-change", key, 0, f"{where}\n{exc!r}")
        return
    status = answer.status
    if status == 0:
        stats.timed_out(key)
        return
    stats.count(key, status, reached=tex.identity in ADMITTED or tex.token is not None)
    stats.identity(tex.identity, str(status))
    if _parser_refusal(answer):
        stats.parser_refusals += 1
        return
    if acting == "project-viewer" and write and 200 <= status < 300:
        stats.refused_admitted += 1  # a viewer's certificate or token may not change anything
        stats.record("viewer-wrote", key, status, f"{where}\n{answer.text[:600]}")
    if must_refuse and status not in (401, 403):
        stats.refused_admitted += 1
        stats.record("refused-admitted", key, status, f"{where}\n{answer.text[:600]}")
    if status >= 500 and status != 501:
        stats.server_errors += 1
        stats.record("server-error", key, status, f"{where}\n{answer.text[:600]}")
    problem = _docker_error_shape(answer) if status >= 400 and method != "HEAD" else None
    if problem is None and looks_like_traceback(answer.text):
        problem = "traceback in the answer"
    if problem:
        stats.bad_error_bodies += 1
        stats.record("bad-error-body", key, status, f"{where}\n{problem}\n{answer.text[:600]}")
    if 400 <= status < 500 and server.digest() != before:
        stats.state_changes += 1
        stats.record("state-change", key, status, f"{where}\n{answer.text[:600]}")
    elif status < 300:
        target.harvest(method, path, answer)


def _garbage() -> st.SearchStrategy[tuple[str, bytes]]:
    return st.one_of(
        st.binary(min_size=1, max_size=600).map(lambda b: ("bytes", b)),
        st.just(("plain-http", b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")),
        st.integers(1, len(_HELLO) - 1).map(lambda n: ("truncated-hello", _HELLO[:n])),
        st.just(("hello-then-silence", _HELLO)),
        st.just(("huge-record", b"\x16\x03\x01\xff\xff" + b"\x01" * 64)),
        st.just(("sslv2-hello", bytes.fromhex("802b0103010012000000100700c0030080010080060040"))),
        st.binary(max_size=64).map(lambda b: ("hello-then-bytes", _HELLO + b)),
    )


def garbage(target: DockerTlsTarget, kind: str, data: bytes, stats: TlsStats) -> None:
    """Send `data` raw on the TLS port, read what comes back for a moment, close; then a valid
    client must still be served."""
    heard = b""
    with socket.create_connection(("127.0.0.1", target.port), timeout=2) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendall(data)
            while len(heard) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                heard += chunk
        except OSError:
            pass  # reset or silence: the listener's to choose
    stats.requests += 1  # not in `statuses`: a raw send has no status of its own
    stats.sent.add(_RAW)
    stats.covered.add(_RAW)
    stats.identity(f"raw:{kind}", "sent")
    if looks_like_traceback(heard.decode("latin-1")):
        stats.bad_error_bodies += 1
        stats.record("bad-error-body", _RAW, 0, f"{kind} {data[:80]!r}\n{heard[:600]!r}")
    probe = target.clients["cert:project-member"]
    try:
        r = probe.get(f"{target.url}/_ping", timeout=5)
        ok = r.status_code == 200
        detail = f"{r.status_code} {r.text[:200]}"
    except httpx.TransportError as exc:
        ok, detail = False, repr(exc)
    if not ok:
        stats.listener_failures += 1
        stats.record("listener-failure", _RAW, 0, f"after {kind} {data[:80]!r}: {detail}")


def fuzz_docker_tls(
    target: DockerTlsTarget,
    seconds: float,
    *,
    seed: int = 0,
    examples_per_round: int = 4,
    rounds: int | None = None,
) -> TlsStats:
    """Fuzz every route of `target` with drawn identities, and its port with raw garbage,
    until `seconds` have passed (at least one round) or for `rounds` rounds exactly."""
    assert target.app is not None, "the target is not started"
    stats = TlsStats()
    ops = operations(target.app)
    stats.operations = {f"{m} {p}" for m, p in ops} | {_RAW}
    rng = random.Random(seed)
    tests = []
    for method, path in ops:
        key = f"{method} {path}"

        def body(tex: _TlsExample, key: str = key, method: str = method, path: str = path) -> None:
            _check(target, key, method, path, tex, stats)

        tests.append(repeat(examples_per_round, _tls_examples(len(_PARAM.findall(path))), body))

    def raw(value: tuple[str, bytes]) -> None:
        garbage(target, value[0], value[1], stats)

    tests.append(repeat(examples_per_round * 2, _garbage(), raw))
    run_rounds(tests, rng, seconds, rounds)
    return stats
