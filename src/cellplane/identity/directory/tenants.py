"""Tenants (system admins) and users (tenant admins): create, read, update, delete, unlock.

Called by `api/routes_directory.py`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, NotFound
from cellplane.identity.directory.bodies import (
    IsolationPolicy,
    TenantCreate,
    UserCreate,
    UserUpdate,
)
from cellplane.identity.directory.common import (
    _audit,
    _tenant_for,
    _user,
    tenant_view,
    user_view,
)
from cellplane.identity.passwords import generate_secret, hash_password
from cellplane.identity.rbac import Principal
from cellplane.ids import new_id, utcnow
from cellplane.services import isolation
from cellplane.services.audit import actor_of, record
from cellplane.services.context import Services
from cellplane.services.idempotency import Outcome
from cellplane.state.cluster_models import Cluster
from cellplane.state.identity_models import (
    AuthCode,
    Group,
    GroupMember,
    IssuedCertificateRecord,
    LdapConfig,
    OAuthClient,
    Quota,
    RefreshToken,
    RevokedToken,
    RoleAssignment,
    User,
)
from cellplane.state.models import Cell, Credential, DockerEndpoint, Project, Tenant, Volume

__all__ = [
    "create_tenant",
    "create_user",
    "delete_tenant",
    "delete_user",
    "get_tenant",
    "get_user",
    "list_tenants",
    "list_users",
    "update_tenant",
    "update_user",
]

# -- tenants (system admins) --------------------------------------------------------------------


def list_tenants(svc: Services, principal: Principal) -> dict[str, Any]:
    with svc.db.reader() as s:
        q = select(Tenant).order_by(Tenant.name)
        if not principal.is_system_admin:
            q = q.where(Tenant.id == principal.tenant_id)
        return {"items": [tenant_view(t) for t in s.scalars(q)], "next_cursor": None}


def get_tenant(svc: Services, principal: Principal, ref: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        return tenant_view(_tenant_for(s, principal, ref))


def update_tenant(
    svc: Services, principal: Principal, ref: str, body: IsolationPolicy
) -> dict[str, Any]:
    """Set the tenant's minimum isolation class (the operator's policy). Existing cells below it
    keep running as they are and are listed in the answer."""
    with svc.db.session() as s:
        t = _tenant_for(s, principal, ref)
        below = isolation.set_minimum(s, t, body.isolation)
        _audit(
            s,
            principal,
            "tenant.update",
            t.name,
            min_isolation=t.min_isolation,
            cells_below_policy=len(below),
        )
        return {**tenant_view(t), "cells_below_policy": below}


def create_tenant(svc: Services, s: Session, principal: Principal, body: TenantCreate) -> Outcome:
    """A tenant, its `default` project and its first admin (password returned once)."""
    if s.scalar(select(Tenant.id).where(Tenant.name == body.name)):
        raise Conflict(f"a tenant named {body.name!r} already exists")
    now = utcnow()
    t = Tenant(id=new_id("tnt"), name=body.name, created_at=now)
    s.add(t)
    s.flush()
    s.add(Project(id=new_id("prj"), tenant_id=t.id, name="default", created_at=now))
    password = body.admin.password or generate_secret(18)
    admin = User(
        id=new_id("usr"),
        tenant_id=t.id,
        name=body.admin.name,
        email=body.admin.email,
        password_hash=hash_password(password),
        source="local",
        disabled=False,
        failed_logins=0,
        created_at=now,
    )
    s.add(admin)
    s.flush()
    s.add(
        RoleAssignment(
            id=new_id("rol"),
            scope="tenant",
            tenant_id=t.id,
            project_id=None,
            subject_kind="user",
            subject_id=admin.id,
            role="tenant-admin",
            created_at=now,
        )
    )
    _audit(s, principal, "tenant.create", t.name, admin=admin.name)
    admin_out: dict[str, Any] = user_view(admin)
    if body.admin.password is None:
        admin_out["password"] = password  # generated: shown once
    return Outcome(201, {**tenant_view(t), "admin": admin_out}, f"/v1/tenants/{t.name}")


def _blockers(s: Session, tenant_name: str, projects: list[str]) -> str | None:
    """What keeps a tenant alive: its cells, volumes and clusters, by name (None: nothing)."""
    parts: list[str] = []
    for model, label in ((Cluster, "cluster"), (Cell, "cell"), (Volume, "volume")):
        names = list(
            s.scalars(select(model.name).where(model.project_id.in_(projects)).order_by(model.name))
        )
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"{len(names)} {label}{'s' if len(names) > 1 else ''} ({shown})")
    if not parts:
        return None
    return (
        f"tenant {tenant_name!r} still has {'; '.join(parts)}; delete them first "
        "(`cellplane cluster rm`, `cellplane cell rm`, `cellplane volume rm`)"
    )


def delete_tenant(svc: Services, principal: Principal, ref: str) -> None:
    """Delete a tenant and everything it owns that is only bookkeeping: projects, users, groups,
    role assignments, clients, quotas, tokens (refresh, revoked, authorization codes), personal
    credentials, certificate records, LDAP settings. Refused, naming them, while it still has
    cells, volumes or clusters: those hold real resources on hosts and are deleted by their own
    commands. Audit events and tasks are history: they keep the tenant's id (a plain column, no
    foreign key) and outlive it."""
    with svc.db.session() as s:
        t = _tenant_for(s, principal, ref)
        if t.name == "default":
            raise Conflict("the default tenant cannot be deleted")
        if t.id == principal.tenant_id:
            raise Conflict("a tenant cannot delete itself")
        projects = list(s.scalars(select(Project.id).where(Project.tenant_id == t.id)))
        blocked = _blockers(s, t.name, projects)
        if blocked:
            raise Conflict(blocked)
        users = list(s.scalars(select(User.id).where(User.tenant_id == t.id)))
        groups = list(s.scalars(select(Group.id).where(Group.tenant_id == t.id)))
        s.execute(delete(GroupMember).where(GroupMember.group_id.in_(groups)))
        s.execute(delete(GroupMember).where(GroupMember.user_id.in_(users)))
        s.execute(delete(RoleAssignment).where(RoleAssignment.tenant_id == t.id))
        s.execute(delete(RoleAssignment).where(RoleAssignment.project_id.in_(projects)))
        s.execute(
            delete(RoleAssignment).where(
                RoleAssignment.subject_kind == "user", RoleAssignment.subject_id.in_(users)
            )
        )
        s.execute(delete(Quota).where(Quota.tenant_id == t.id))
        s.execute(delete(Quota).where(Quota.project_id.in_(projects)))
        s.execute(delete(RefreshToken).where(RefreshToken.tenant_id == t.id))
        s.execute(delete(AuthCode).where(AuthCode.tenant_id == t.id))
        s.execute(delete(RevokedToken).where(RevokedToken.tenant_id == t.id))
        s.execute(delete(IssuedCertificateRecord).where(IssuedCertificateRecord.tenant_id == t.id))
        s.execute(delete(Credential).where(Credential.tenant_id == t.id))
        s.execute(delete(Group).where(Group.tenant_id == t.id))
        s.execute(delete(OAuthClient).where(OAuthClient.tenant_id == t.id))
        s.execute(delete(User).where(User.tenant_id == t.id))
        s.execute(delete(LdapConfig).where(LdapConfig.tenant_id == t.id))
        s.execute(delete(DockerEndpoint).where(DockerEndpoint.project_id.in_(projects)))
        s.execute(delete(Project).where(Project.tenant_id == t.id))
        _audit(s, principal, "tenant.delete", t.name)
        s.delete(t)


# -- users ------------------------------------------------------------------------------------------


def list_users(svc: Services, principal: Principal) -> dict[str, Any]:
    import time

    now = time.time()
    with svc.db.reader() as s:
        users = s.scalars(
            select(User).where(User.tenant_id == principal.tenant_id).order_by(User.name)
        )
        return {"items": [user_view(u, now) for u in users], "next_cursor": None}


def get_user(svc: Services, principal: Principal, ref: str) -> dict[str, Any]:
    import time

    with svc.db.reader() as s:
        return user_view(_user(s, principal, ref), time.time())


def create_user(svc: Services, s: Session, principal: Principal, body: UserCreate) -> Outcome:
    if s.scalar(
        select(User.id).where(User.tenant_id == principal.tenant_id, User.name == body.name)
    ):
        raise Conflict(f"a user named {body.name!r} already exists")
    password = body.password or generate_secret(18)
    u = User(
        id=new_id("usr"),
        tenant_id=principal.tenant_id,
        name=body.name,
        email=body.email,
        display_name=body.display_name,
        password_hash=hash_password(password),
        source="local",
        disabled=False,
        failed_logins=0,
        created_at=utcnow(),
    )
    s.add(u)
    s.flush()
    _audit(s, principal, "user.create", u.name)
    out = user_view(u)
    if body.password is None:
        out["password"] = password
    return Outcome(201, out, f"/v1/users/{u.id}")


def _user_to_update(s: Session, principal: Principal, ref: str, body: UserUpdate) -> User:
    """The caller's tenant's user; for a system admin only unlocking, any tenant's user by id
    (a tenant's only admin, locked out, can be rescued by the operator)."""
    try:
        return _user(s, principal, ref)
    except NotFound:
        unlock_only = body.unlock and body.model_fields_set <= {"unlock"}
        if principal.is_system_admin and unlock_only:
            u = s.get(User, ref)
            if u is not None:
                return u
        raise


def update_user(svc: Services, principal: Principal, ref: str, body: UserUpdate) -> dict[str, Any]:
    from cellplane.identity.authn import subject_changed

    # argon2 before the transaction: no write lock held for it.
    new_hash = hash_password(body.password) if body.password is not None else None
    with svc.db.session() as s:
        u = _user_to_update(s, principal, ref, body)
        changed: list[str] = []
        if new_hash is not None:
            if u.source != "local":
                raise Conflict(f"user {u.name!r} comes from LDAP; change the password there")
            u.password_hash = new_hash
            changed.append("password")
            # A new password ends the sessions of the old one.
            s.execute(
                delete(RefreshToken).where(
                    RefreshToken.subject_kind == "user", RefreshToken.subject_id == u.id
                )
            )
        if body.email is not None:
            u.email = body.email
            changed.append("email")
        if body.display_name is not None:
            u.display_name = body.display_name
            changed.append("display_name")
        if body.disabled is not None:
            if body.disabled and u.id == principal.subject:
                raise Conflict("you cannot disable yourself")
            u.disabled = body.disabled
            changed.append("disabled")
        if body.unlock:
            u.failed_logins, u.locked_until, u.last_failure_at = 0, None, None
            changed.append("unlock")
        _audit(s, principal, "user.update", u.name, fields=changed)
        if u.tenant_id != principal.tenant_id:  # the operator's unlock: the tenant sees it too
            record(
                s,
                tenant_id=u.tenant_id,
                actor=actor_of(principal),
                action="user.update",
                target=u.name,
                detail={"fields": changed},
            )
        view = user_view(u)
    if body.disabled is not None:
        subject_changed(u.id)  # disabled: their access tokens stop working now, not at expiry
    return view


def delete_user(svc: Services, principal: Principal, ref: str) -> None:
    from cellplane.identity.authn import subject_changed

    with svc.db.session() as s:
        u = _user(s, principal, ref)
        if u.id == principal.subject:
            raise Conflict("you cannot delete yourself")
        s.execute(delete(GroupMember).where(GroupMember.user_id == u.id))
        s.execute(
            delete(RoleAssignment).where(
                RoleAssignment.subject_kind == "user", RoleAssignment.subject_id == u.id
            )
        )
        s.execute(
            delete(RefreshToken).where(
                RefreshToken.subject_kind == "user", RefreshToken.subject_id == u.id
            )
        )
        s.execute(delete(Credential).where(Credential.subject == u.id))
        _audit(s, principal, "user.delete", u.name)
        s.delete(u)
    subject_changed(u.id)  # their access tokens stop working now, not at expiry
