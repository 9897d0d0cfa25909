"""Fixtures of the PKI tests: users with bearer tokens, keys and CSRs, a fake TLS peer.

Users and their personal access tokens are written straight into the database (the directory
service is not what is under test); `mtls_client` wraps the app so each request carries the
ASGI TLS extension exactly as `cellplane.api.tls.TLSH11Protocol` adds it on a real connection.
"""

from __future__ import annotations

import hashlib
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cellplane_platform_support import Platform
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from cellplane.api.tls import _WithTLS
from cellplane.ids import new_id, utcnow
from cellplane.state.identity_models import RoleAssignment, User
from cellplane.state.models import Credential, Tenant

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Caller:
    id: str
    name: str
    tenant_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def admin(plat: Platform) -> Caller:
    """The bootstrap admin (system-admin of the default tenant) and its token."""
    r = plat.client.get("/v1/whoami", headers=plat.admin)
    assert r.status_code == 200, r.text
    me = r.json()
    with plat.svc.db.reader() as s:
        tenant_id = s.scalar(select(Tenant.id).where(Tenant.name == "default"))
    assert tenant_id
    return Caller(me["subject"], "admin", tenant_id, plat.admin_token)


@pytest.fixture
def add_user(plat: Platform) -> Callable[..., Caller]:
    """`add_user(name, tenant="default", role="project-viewer")`: a user with a bearer token;
    the tenant is created if missing, the role granted over the tenant (None: no role)."""

    def add(name: str, *, tenant: str = "default", role: str | None = "project-viewer") -> Caller:
        now = utcnow()
        token = "cpt_" + secrets.token_urlsafe(24)
        with plat.svc.db.session() as s:
            t = s.scalar(select(Tenant).where(Tenant.name == tenant))
            if t is None:
                t = Tenant(id=new_id("tnt"), name=tenant, created_at=now)
                s.add(t)
                s.flush()
            user = User(
                id=new_id("usr"),
                tenant_id=t.id,
                name=name,
                source="local",
                disabled=False,
                failed_logins=0,
                created_at=now,
            )
            s.add(user)
            if role:
                s.add(
                    RoleAssignment(
                        id=new_id("rol"),
                        scope="tenant",
                        tenant_id=t.id,
                        project_id=None,
                        subject_kind="user",
                        subject_id=user.id,
                        role=role,
                        created_at=now,
                    )
                )
            s.add(
                Credential(
                    id=new_id("crd"),
                    name=f"test-{name}",
                    secret_hash=hashlib.sha256(token.encode()).hexdigest(),
                    subject=user.id,
                    tenant_id=t.id,
                    roles=[],
                    created_at=now,
                )
            )
            return Caller(user.id, name, t.id, token)

    return add


def _csr(
    key: SigningKey,
    cn: str,
    sans: list[x509.GeneralName] | None = None,
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="session")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def make_csr(key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    """`make_csr(cn, key=<session P-256 key>, sans=None)`: a PEM CSR."""

    def make(cn: str, key: SigningKey = key, sans: list[x509.GeneralName] | None = None) -> str:
        return _csr(key, cn, sans)

    return make


@pytest.fixture
def issue(plat: Platform, make_csr: Callable[..., str]) -> Callable[..., dict[str, Any]]:
    """`issue(caller, ttl_days=None)`: POST /v1/certificates with a CSR for the caller."""

    def run(caller: Caller, ttl_days: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"csr": make_csr(caller.id)}
        if ttl_days is not None:
            body["ttl_days"] = ttl_days
        r = plat.client.post("/v1/certificates", json=body, headers=caller.headers)
        assert r.status_code == 201, r.text
        data: dict[str, Any] = r.json()
        return data

    return run


@pytest.fixture
def mtls_client(plat: Platform) -> Callable[[str | None], TestClient]:
    """`mtls_client(cert_pem)`: a client of the same app whose requests come "over TLS" with
    that client certificate (None: TLS without one). Lifespan already runs under plat.client."""

    def make(cert_pem: str | None) -> TestClient:
        ext = {"client_cert_chain": [cert_pem] if cert_pem else [], "tls_version": 0x0304}
        return TestClient(_WithTLS(plat.client.app, ext))

    return make
