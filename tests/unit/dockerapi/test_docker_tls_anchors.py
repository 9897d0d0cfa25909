"""The endpoints' TLS trusts Cellplane's intermediates as anchors (`listeners.tls_context`), so a
handshake does not check the root's P-384 signature on the client's CA every time; it accepts the
same certificates as the root alone: a tenant whose CA is made after the context still verifies
through the root, and a certificate whose issuer only has the name of one of ours is refused."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from pathlib import Path

from cellplane_platform_support import Platform
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cellplane.dockerapi.listeners import tls_context
from cellplane.identity import pki


def _handshake(server: ssl.SSLContext, cert: Path, key: Path, root: Path) -> bytes | None:
    """A TLS handshake with `cert`/`key` against `server` over a socket pair: the server's view
    of the client certificate (DER), or None if the handshake failed."""
    client = ssl.create_default_context(cafile=str(root))
    client.check_hostname = False
    client.load_cert_chain(str(cert), str(key))
    a, b = socket.socketpair()
    got: list[bytes | None] = [None]

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                got[0] = s.getpeercert(binary_form=True)
                s.sendall(b"x")
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client.wrap_socket(b) as c:
            c.recv(1)  # TLS 1.3: the server's verdict on the client certificate comes after
    except (ssl.SSLError, OSError):
        pass
    t.join(10)
    return got[0]


def _write(tmp: Path, name: str, chain_pem: str, key_pem: str) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert.write_text(chain_pem)
    key.write_text(key_pem)
    return cert, key


def test_the_intermediates_are_anchors_and_nothing_more_is_accepted(
    plat: Platform, tmp_path: Path
) -> None:
    svc = plat.svc
    pki.ca_chain_pem(svc, "default")  # the default tenant's CA, made on first use
    ctx = tls_context(svc)
    assert ctx.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    authority = pki.ca(svc)
    root = pki.root_pem_path(svc.data_dir)
    now = time.time()
    anchors = {c["subject"] for c in ctx.get_ca_certs()}
    assert authority.tenants == ["default"]
    assert len(anchors) == 3  # the root, the system CA, the default tenant's
    assert ctx.verify_mode == ssl.CERT_OPTIONAL  # a script with a bearer token sends none

    # A user of a tenant whose CA exists: accepted (its chain ends at an anchor).
    tenant = "default"
    issued = authority.tenant(tenant).issue("alice", profile="client", ttl_s=3600, now=now)
    cert, key = _write(tmp_path, "alice", issued.chain_pem, issued.key_pem)
    assert _handshake(ctx, cert, key, root) is not None

    # A tenant whose CA was made after the context: accepted through the root.
    later = authority.create_tenant("later-tenant", now)
    issued = later.issue("bob", profile="client", ttl_s=3600, now=now)
    cert, key = _write(tmp_path, "bob", issued.chain_pem, issued.key_pem)
    assert _handshake(ctx, cert, key, root) is not None

    # A certificate whose issuer has the name of an anchor but another key: refused.
    forger = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mallory")]))
        .issuer_name(authority.tenant(tenant).cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(hours=1))
        .sign(forger, hashes.SHA256())
    )
    cert, key = _write(
        tmp_path,
        "mallory",
        forged.public_bytes(serialization.Encoding.PEM).decode(),
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    assert _handshake(ctx, cert, key, root) is None
