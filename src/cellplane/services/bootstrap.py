"""The first-start seed: default tenant and project, flavors, the host image, the `admin` user
with its bootstrap token, and the host join token. Idempotent.

Called by `cellplane up` / `cellplane server` (`daemon.py`), the test harness and benchmarks.
It lived beside the Authenticator in `services/auth.py`; it writes rows of several resources
(flavors, images, hosts' join token), so it is a service, not part of identity.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select

from cellplane.identity.authn import DEFAULT_TENANT, sha256_hex
from cellplane.identity.passwords import generate_secret, hash_password
from cellplane.ids import new_id, utcnow
from cellplane.services.context import Services
from cellplane.services.hosts import JOIN_TOKEN_KEY
from cellplane.services.images import DEFAULT_FLAVORS
from cellplane.state.identity_models import RoleAssignment, User
from cellplane.state.models import Credential, Flavor, Image, Project, Setting, Tenant

__all__ = ["Seeded", "seed"]


@dataclass(frozen=True)
class Seeded:
    admin_token: str | None  # only when created now: it is never shown again
    join_token: str | None
    admin_password: str | None = None  # the `admin` user's first password, likewise


def seed(svc: Services, *, admin_token: bool = True, join_token: bool = True) -> Seeded:
    """Create what a fresh deployment needs; idempotent. New secrets are returned once."""
    now = utcnow()
    new_admin = new_join = new_password = None
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
        admin = s.scalar(select(User).where(User.tenant_id == tenant.id, User.name == "admin"))
        if admin is None:
            new_password = generate_secret(18)
            admin = User(
                id=new_id("usr"),
                tenant_id=tenant.id,
                name="admin",
                display_name="Bootstrap administrator",
                password_hash=hash_password(new_password),
                source="local",
                disabled=False,
                failed_logins=0,
                created_at=now,
            )
            s.add(admin)
            s.add(
                RoleAssignment(
                    id=new_id("rol"),
                    scope="system",
                    tenant_id=None,
                    project_id=None,
                    subject_kind="user",
                    subject_id=admin.id,
                    role="system-admin",
                    created_at=now,
                )
            )
            s.flush()
            # A credential from before the directory existed now belongs to the admin user.
            for old in s.scalars(select(Credential).where(Credential.subject == "admin")):
                old.subject = admin.id
        if (
            admin_token
            and s.scalar(select(Credential.id).where(Credential.name == "bootstrap-admin")) is None
        ):
            new_admin = "cpt_" + secrets.token_urlsafe(32)
            s.add(
                Credential(
                    id=new_id("crd"),
                    name="bootstrap-admin",
                    secret_hash=sha256_hex(new_admin),
                    subject=admin.id,
                    tenant_id=tenant.id,
                    roles=["system-admin"],
                    created_at=now,
                )
            )
        if join_token and s.get(Setting, JOIN_TOKEN_KEY) is None:
            new_join = "cpj_" + secrets.token_urlsafe(32)
            s.add(Setting(key=JOIN_TOKEN_KEY, value=sha256_hex(new_join)))
    return Seeded(new_admin, new_join, new_password)
