"""Bearer credentials -> Principal, and the first-start seed (default tenant, flavors, host image).

The API's auth dependency calls `authenticate`. Until the identity service issues tokens, the only
user credential is the bootstrap admin token that `cellplane up` creates: shown once, stored as a
SHA-256 hash (it is a 256-bit random secret, so a slow password hash adds nothing but latency).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from sqlalchemy import select

from cellplane.errors import Unauthorized
from cellplane.ids import new_id, utcnow
from cellplane.services.context import Principal, Services
from cellplane.services.hosts import JOIN_TOKEN_KEY
from cellplane.services.images import DEFAULT_FLAVORS
from cellplane.state.models import Credential, Flavor, Image, Project, Setting, Tenant

__all__ = ["Authenticator", "Seeded", "seed"]

DEFAULT_TENANT = "default"


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


@dataclass(frozen=True)
class Seeded:
    admin_token: str | None  # only when created now: it is never shown again
    join_token: str | None


def seed(svc: Services, *, admin_token: bool = True, join_token: bool = True) -> Seeded:
    """Create what a fresh deployment needs; idempotent. New secrets are returned once."""
    now = utcnow()
    new_admin = new_join = None
    with svc.db.session() as s:
        tenant = s.scalar(select(Tenant).where(Tenant.name == DEFAULT_TENANT))
        if tenant is None:
            tenant = Tenant(id=new_id("tnt"), name=DEFAULT_TENANT, created_at=now)
            s.add(tenant)
            s.flush()
        if (
            s.scalar(
                select(Project.id).where(Project.tenant_id == tenant.id, Project.name == "default")
            )
            is None
        ):
            s.add(Project(id=new_id("prj"), tenant_id=tenant.id, name="default", created_at=now))
        for name, (cpu, mem, disk) in DEFAULT_FLAVORS.items():
            if s.get(Flavor, name) is None:
                s.add(Flavor(name=name, cpu=cpu, memory_mb=mem, disk_gb=disk))
        if s.scalar(select(Image.id).where(Image.name == "host")) is None:
            s.add(
                Image(
                    id=new_id("img"),
                    name="host",
                    kind="host",
                    refs=[],
                    size_bytes=0,
                    created_at=now,
                )
            )
        if (
            admin_token
            and s.scalar(select(Credential.id).where(Credential.name == "bootstrap-admin")) is None
        ):
            new_admin = "cpt_" + secrets.token_urlsafe(32)
            s.add(
                Credential(
                    id=new_id("crd"),
                    name="bootstrap-admin",
                    secret_hash=_sha(new_admin),
                    subject="admin",
                    tenant_id=tenant.id,
                    roles=["system-admin"],
                    created_at=now,
                )
            )
        if join_token and s.get(Setting, JOIN_TOKEN_KEY) is None:
            new_join = "cpj_" + secrets.token_urlsafe(32)
            s.add(Setting(key=JOIN_TOKEN_KEY, value=_sha(new_join)))
    return Seeded(new_admin, new_join)


class Authenticator:
    """Resolves bearer tokens; caches hits so a request costs one hash and a dict lookup."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._cache: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str) -> Principal:
        h = _sha(token)
        hit = self._cache.get(h)
        if hit is not None:
            return hit
        with self._svc.db.reader() as s:
            cred = s.scalar(select(Credential).where(Credential.secret_hash == h))
            if cred is None or not hmac.compare_digest(cred.secret_hash, h):
                raise Unauthorized("the bearer token is not valid")
            tenant = s.get(Tenant, cred.tenant_id)
            p = Principal(
                subject=cred.subject,
                tenant_id=cred.tenant_id,
                tenant=tenant.name if tenant else "",
                roles=tuple(cred.roles),
            )
        with self._lock:
            self._cache[h] = p
        return p
