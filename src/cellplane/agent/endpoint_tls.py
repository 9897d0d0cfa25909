"""TLS for the agent's endpoint (`agent.endpoint`) on a host of a TLS deployment.

The endpoint serves with the host certificate (``<tls dir>/host.pem``, the leaf then the system
intermediate; ``host.key``) and requires a client certificate issued by that same intermediate,
of the ``client`` profile (extended key usage exactly TLS client): the server's own
(`services.agent_tls`). A certificate of another CA, of a tenant (a user's), of another host, or
none is refused in the handshake, before any request is read; the bearer secret the agent gave
the server at registration is still asked for on every request.

The handshake runs in the request's thread (a slow or silent peer holds only its own thread,
for at most :data:`HANDSHAKE_TIMEOUT_S`). The context is made again when ``host.pem`` changes (the
agent renews its certificate from its heartbeat loop), so a renewed certificate is served from the
next connection on without a restart. Until the agent has a certificate (before its first
registration), every connection is refused.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import structlog

__all__ = ["HANDSHAKE_TIMEOUT_S", "EndpointTLS", "TLSServer"]

log = structlog.get_logger("cellplane.agent.endpoint")

HANDSHAKE_TIMEOUT_S: Final = 10.0
_PEM: Final = re.compile(r"-----BEGIN CERTIFICATE-----\s.+?-----END CERTIFICATE-----\s*", re.DOTALL)


class EndpointTLS:
    """The endpoint's server context, kept in step with the host certificate's files."""

    def __init__(self, tls_dir: Path) -> None:
        self.cert = tls_dir / "host.pem"
        self.key = tls_dir / "host.key"
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._ctx: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext | None:
        """The current context; None while there is no certificate yet."""
        try:
            st = self.cert.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._ctx, self._stamp = self._make(), stamp
            return self._ctx

    def _make(self) -> ssl.SSLContext | None:
        try:
            blocks = _PEM.findall(self.cert.read_text("ascii"))
            if len(blocks) < 2:
                raise ValueError(f"{self.cert} has no issuer certificate after the host's")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.cert, self.key)
            # Clients: only certificates of the intermediate that issued this host's.
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            ctx.load_verify_locations(cadata="".join(blocks[1:]))
            # No session tickets: nothing is written on a connection but the answers.
            ctx.num_tickets = 0
        except (OSError, ValueError, ssl.SSLError) as e:
            log.warning("endpoint certificate unusable", path=str(self.cert), error=str(e))
            return None
        return ctx


def client_profile(der: bytes | None) -> bool:
    """Whether a peer certificate (DER) is a ``client`` profile one: its extended key usage is
    TLS client authentication alone (a host certificate also says TLS server)."""
    if not der:
        return False
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        eku = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        )
    except (ValueError, x509.ExtensionNotFound):
        return False
    return list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


class TLSServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections are TLS, handshaken in their own thread."""

    def __init__(self, address: tuple[str, int], handler: Any, tls: EndpointTLS) -> None:
        super().__init__(address, handler)
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        ctx = self.tls.context()
        if ctx is None:
            return  # no certificate yet: the connection is closed by the caller
        conn: ssl.SSLSocket | None = None
        try:
            request.settimeout(HANDSHAKE_TIMEOUT_S)
            conn = ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            conn.do_handshake()
            if not client_profile(conn.getpeercert(binary_form=True)):
                raise ssl.SSLError("the client certificate is not a client-profile certificate")
            conn.settimeout(None)
        except (OSError, ssl.SSLError) as e:
            log.info("endpoint connection refused", peer=str(client_address[0]), error=str(e))
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def shutdown_request(self, request: Any) -> None:
        # The plain socket was handed to the TLS one (wrap_socket detaches it): nothing to shut.
        if isinstance(request, socket.socket) and request.fileno() == -1:
            return
        super().shutdown_request(request)
