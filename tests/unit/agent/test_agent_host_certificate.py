"""The agent's host certificate: mutual TLS from the start when it holds a valid one, and its
rotation in the last third of its lifetime."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cellplane.agent.server_client import ServerClient


def _write_cert(cert_dir: Path, start: dt.datetime, days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "host.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (cert_dir / "host.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_without_a_certificate_the_agent_starts_without_mutual_tls(tmp_path: Path) -> None:
    client = ServerClient("https://server.test:7400", cert_dir=tmp_path / "tls")
    try:
        assert not client.mutual_tls
        assert not client.rotation_due()
    finally:
        client.close()


def test_a_valid_certificate_means_mutual_tls_and_rotation_in_its_last_third(
    tmp_path: Path,
) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    _write_cert(tmp_path / "tls", start, days=90)
    client = ServerClient("https://server.test:7400", cert_dir=tmp_path / "tls")
    try:
        assert client.mutual_tls
        assert not client.rotation_due()
        assert not client.rotation_due((start + dt.timedelta(days=59)).timestamp())
        assert client.rotation_due((start + dt.timedelta(days=61)).timestamp())
    finally:
        client.close()


def test_an_expired_certificate_is_not_used(tmp_path: Path) -> None:
    _write_cert(tmp_path / "tls", dt.datetime.now(dt.UTC) - dt.timedelta(days=100), days=90)
    client = ServerClient("https://server.test:7400", cert_dir=tmp_path / "tls")
    try:
        assert not client.mutual_tls  # it joins again with its join token
    finally:
        client.close()


def test_a_plain_http_server_never_uses_the_certificate(tmp_path: Path) -> None:
    _write_cert(tmp_path / "tls", dt.datetime.now(dt.UTC) - dt.timedelta(days=1), days=90)
    client = ServerClient("http://server.test:7400", cert_dir=tmp_path / "tls")
    try:
        assert not client.mutual_tls
    finally:
        client.close()
