"""The server's one factory of connections to host agents: mutual TLS with the agent's
certificate pinned, or plain HTTP for the agents of a `--no-tls` deployment.

An agent of a TLS deployment serves its endpoint (`agent.endpoint`: logs, exec, attach, copies,
builds, volume transfer) with its host certificate and asks the caller for a client certificate
from the deployment's system intermediate. The server presents one of its own
(:func:`client_certificate`: CN ``cellplane-server``, profile ``client``, kept in
``<data dir>/identity/tls/agent-client.pem``) and trusts, for each agent, exactly the leaf the CA
issued to that host at its last registration (``hosts.cert_pem``) and nothing else: that leaf is
the context's only trust anchor (``VERIFY_X509_PARTIAL_CHAIN``), so a certificate of another host,
of another CA, or an earlier certificate of the same host is refused in the handshake, before the
request (and the agent's bearer secret) is sent. A revoked host has no pin: its endpoint is not
used at all (the request fails as an unreachable agent, naming why).

Every path that reaches an agent gets its client here: :func:`async_client` (the API's logs and
exec, the portal's log streams, the Docker-compatible endpoints' copies, stats and builds),
:func:`sync_client` (the cluster executor's probes, the volume copies of cell moves) and
:func:`ssl_for` (the raw upgraded connection of the interactive exec and attach,
`agent_proxy.open_exec`). The clients are ordinary ``httpx`` clients whose transport picks, per
request, the plain transport (``http://``) or the pinned one of the agent's origin.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from pathlib import Path
from typing import Final

import anyio.to_thread
import httpx
from sqlalchemy import select

from cellplane.files import ensure_private_dir, write_private_file
from cellplane.services.context import Services
from cellplane.state.models import Host

__all__ = [
    "CLIENT_CN",
    "AgentTLS",
    "async_client",
    "client_certificate",
    "of",
    "pinned_certificate",
    "ssl_for",
    "sync_client",
]

CLIENT_CN: Final = "cellplane-server"
_DAY: Final = 86400.0
_CLIENT_TTL_S: Final = 90 * _DAY  # as the server's own HTTPS certificate (identity.pki)
_CLIENT_RENEW_S: Final = 30 * _DAY
# How long a made context is used before the client certificate's files are looked at again.
_CLIENT_CHECK_S: Final = 3600.0


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def client_certificate(svc: Services, *, now: float | None = None) -> tuple[Path, Path, float]:
    """(certificate chain path, key path, expiry) of the server's client certificate for agents,
    from the system intermediate; issued on first use and again when it has less than 30 days
    left or is not the current system intermediate's."""
    # Imported here: a `--no-tls` server never loads the CA (nor cryptography) for its agents.
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    from cellplane.identity import pki

    now = time.time() if now is None else now
    tls = svc.data_dir / "identity" / "tls"
    cert_path, key_path = tls / "agent-client.pem", tls / "agent-client.key"
    with pki.CA_LOCK:
        authority = pki.ca(svc)
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            cert.verify_directly_issued_by(authority.system.cert)
            expires = cert.not_valid_after_utc.timestamp()
            if key_path.exists() and expires - now > _CLIENT_RENEW_S:
                return cert_path, key_path, expires
        except (OSError, ValueError, TypeError, InvalidSignature):
            pass  # none yet, unreadable, or from a CA since replaced: issue one
        issued = authority.system.issue(CLIENT_CN, profile="client", ttl_s=_CLIENT_TTL_S, now=now)
        ensure_private_dir(tls)
        write_private_file(key_path, issued.key_pem.encode("ascii"))
        write_private_file(cert_path, issued.chain_pem.encode("ascii"))
        leaf = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    return cert_path, key_path, leaf.not_valid_after_utc.timestamp()


def pinned_certificate(svc: Services, origin: str) -> str | None:
    """The certificate (PEM) of the host whose agent endpoint is ``origin``
    (``https://address:port``), None if no such host holds one or the host is revoked."""
    with svc.db.reader() as s:
        pem = s.scalar(
            select(Host.cert_pem)
            .where(Host.agent_url == origin, Host.revoked_at.is_(None), Host.cert_pem.is_not(None))
            .order_by(Host.last_heartbeat.desc())
            .limit(1)
        )
    return str(pem) if pem else None


class AgentTLS:
    """One server's TLS towards agents: its client certificate and a context per pinned leaf."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._client: tuple[Path, Path, float] | None = None
        self._checked = 0.0

    def _client_files(self) -> tuple[Path, Path]:
        now = time.time()
        with self._lock:
            stale = self._client is None or now - self._checked > _CLIENT_CHECK_S
            if stale or (self._client is not None and self._client[2] - now < _CLIENT_RENEW_S):
                fresh = client_certificate(self.svc, now=now)
                if self._client is not None and fresh[2] != self._client[2]:
                    self._contexts.clear()  # renewed: contexts made from now on present it
                self._client, self._checked = fresh, now
            assert self._client is not None
            return self._client[0], self._client[1]

    def context(self, pem: str) -> ssl.SSLContext:
        """A client context that trusts only the certificate ``pem`` and presents the server's
        client certificate."""
        cert_path, key_path = self._client_files()
        key = hashlib.sha256(pem.encode()).hexdigest()
        with self._lock:
            found = self._contexts.get(key)
            if found is not None:
                return found
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # The pin is the identity: the exact leaf, not a name in it.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.load_verify_locations(cadata=pem)
        ctx.load_cert_chain(cert_path, key_path)
        with self._lock:
            if len(self._contexts) > 4096:
                self._contexts.clear()
            return self._contexts.setdefault(key, ctx)

    def for_origin(self, origin: str) -> tuple[str, ssl.SSLContext] | None:
        """(pin fingerprint, context) for an ``https://`` agent origin, None for ``http://``;
        `httpx.ConnectError` when the origin has no pinned certificate (unknown or revoked)."""
        if not origin.startswith("https://"):
            return None
        pem = pinned_certificate(self.svc, origin)
        if pem is None:
            raise httpx.ConnectError(
                f"no pinned certificate for the agent at {origin} "
                "(its host is revoked, or has not registered with a certificate)"
            )
        return hashlib.sha256(pem.encode()).hexdigest(), self.context(pem)


_OF_LOCK = threading.Lock()


def of(svc: Services) -> AgentTLS:
    """The :class:`AgentTLS` of ``svc`` (one per server process and database)."""
    with _OF_LOCK:
        found = vars(svc).get("_agent_tls")
        if not isinstance(found, AgentTLS):
            found = AgentTLS(svc)
            vars(svc)["_agent_tls"] = found
        return found


def ssl_for(svc: Services, url: str) -> ssl.SSLContext | None:
    """The context to open a raw connection to the agent at ``url`` (None: plain HTTP)."""
    found = of(svc).for_origin(_origin(httpx.URL(url)))
    return found[1] if found is not None else None


class _Transport(httpx.BaseTransport):
    def __init__(self, tls: AgentTLS) -> None:
        self._tls = tls
        self._plain = httpx.HTTPTransport(verify=False)
        self._pinned: dict[str, tuple[str, httpx.HTTPTransport]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request.url)
        found = self._tls.for_origin(origin)
        if found is None:
            return self._plain.handle_request(request)
        sha, ctx = found
        old = None
        with self._lock:
            entry = self._pinned.get(origin)
            if entry is None or entry[0] != sha:
                old = entry[1] if entry is not None else None
                entry = (sha, httpx.HTTPTransport(verify=ctx))
                self._pinned[origin] = entry
        if old is not None:
            old.close()
        return entry[1].handle_request(request)

    def close(self) -> None:
        self._plain.close()
        with self._lock:
            pinned, self._pinned = list(self._pinned.values()), {}
        for _, transport in pinned:
            transport.close()


class _AsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, tls: AgentTLS) -> None:
        self._tls = tls
        self._plain = httpx.AsyncHTTPTransport(verify=False)
        self._pinned: dict[str, tuple[str, httpx.AsyncHTTPTransport]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request.url)
        if not origin.startswith("https://"):
            return await self._plain.handle_async_request(request)
        found = await anyio.to_thread.run_sync(self._tls.for_origin, origin)
        assert found is not None
        sha, ctx = found
        entry = self._pinned.get(origin)
        if entry is None or entry[0] != sha:
            if entry is not None:
                await entry[1].aclose()
            entry = (sha, httpx.AsyncHTTPTransport(verify=ctx))
            self._pinned[origin] = entry
        return await entry[1].handle_async_request(request)

    async def aclose(self) -> None:
        await self._plain.aclose()
        pinned, self._pinned = list(self._pinned.values()), {}
        for _, transport in pinned:
            await transport.aclose()


def async_client(svc: Services, *, timeout: float | httpx.Timeout = 30.0) -> httpx.AsyncClient:
    """An async client for agents (the API's, the portal's, the Docker endpoints')."""
    return httpx.AsyncClient(timeout=timeout, transport=_AsyncTransport(of(svc)))


def sync_client(svc: Services, *, timeout: float | httpx.Timeout = 30.0) -> httpx.Client:
    """A blocking client for agents (cluster probes, volume copies), for worker threads."""
    return httpx.Client(timeout=timeout, transport=_Transport(of(svc)))
