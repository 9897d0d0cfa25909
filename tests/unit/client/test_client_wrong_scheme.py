"""A plain-HTTP URL pointed at an HTTPS server: the SDK says so, not "Server disconnected"."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cellplane.client import CellplaneConnectionError, Client
from cellplane.client._base import speaks_tls


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_port(tmp_path: Path) -> Iterator[int]:
    """A TLS-only listener that, like the HTTPS server, drops whatever is not a TLS handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed(tmp_path))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # the loop sees `stop` (closing does not wake an accept)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except (OSError, ssl.SSLError):
                    pass  # a plain-HTTP request: dropped without an answer

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(timeout=10)
    listener.close()


def test_plain_http_against_https_names_the_scheme(tls_port: int) -> None:
    assert speaks_tls("127.0.0.1", tls_port)
    with (
        Client(f"http://127.0.0.1:{tls_port}", "t", retries=0) as client,
        pytest.raises(CellplaneConnectionError) as caught,
    ):
        client.health()
    message = str(caught.value)
    assert f"the server at http://127.0.0.1:{tls_port} speaks HTTPS" in message
    assert f"use https://127.0.0.1:{tls_port}" in message
    assert "disconnected" not in message


def test_a_closed_port_is_not_taken_for_https() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = int(s.getsockname()[1])
    assert not speaks_tls("127.0.0.1", port)
