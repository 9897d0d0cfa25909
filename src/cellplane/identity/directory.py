"""The directory of the identity service: tenants, users, groups, OAuth clients, role assignments,
and a tenant's LDAP federation settings.

The operator (system admin) creates a tenant with its first admin; a tenant admin manages that
tenant's users, groups, clients and assignments. Everything a caller names is looked up inside
their own tenant, so another tenant's user, group or client answers 404 like one that does not
exist. Secrets are returned once, when created, and stored hashed.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from cellplane.identity.passwords import generate_secret, hash_password, hash_secret
from cellplane.identity.rbac import ASSIGNABLE_ROLES, Principal
from cellplane.ids import new_id, utcnow
from cellplane.services.audit import actor_of, record
from cellplane.services.context import Services
from cellplane.services.idempotency import Outcome
from cellplane.state.cluster_models import Cluster
from cellplane.state.identity_models import (
    Group,
    GroupMember,
    LdapConfig,
    OAuthClient,
    RefreshToken,
    RoleAssignment,
    User,
)
from cellplane.state.models import Cell, Credential, Project, Tenant, Volume
from cellplane.validation import DNS_LABEL, user_name

__all__ = [
    "AssignmentCreate",
    "ClientCreate",
    "GroupCreate",
    "LdapBody",
    "TenantCreate",
    "UserCreate",
    "UserUpdate",
]

TENANT_NAME = DNS_LABEL
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
MIN_PASSWORD = 12
GRANT_TYPES = frozenset({"client_credentials", "authorization_code", "refresh_token", "password"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _password(v: str | None) -> str | None:
    if v is not None and len(v) < MIN_PASSWORD:
        raise ValueError(f"must be at least {MIN_PASSWORD} characters")
    return v


class AdminBody(_Strict):
    name: str = Field(default="admin", min_length=1, max_length=128)
    password: str | None = Field(default=None, max_length=1024)
    email: str | None = Field(default=None, max_length=254)

    _pw = field_validator("password")(_password)


class TenantCreate(_Strict):
    name: str = Field(min_length=1, max_length=63)
    admin: AdminBody = Field(default_factory=AdminBody)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TENANT_NAME.fullmatch(v):
            raise ValueError("must be a DNS label: 1-63 of a-z, 0-9 and '-'")
        return v


class UserCreate(_Strict):
    name: str = Field(min_length=1, max_length=128)
    password: str | None = Field(default=None, max_length=1024)
    email: str | None = Field(default=None, max_length=254)
    display_name: str | None = Field(default=None, max_length=256)

    _pw = field_validator("password")(_password)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not USER_NAME.fullmatch(v):
            raise ValueError("1-128 of letters, digits and '._@-', starting with a letter or digit")
        return user_name(v)


class UserUpdate(_Strict):
    password: str | None = Field(default=None, max_length=1024)
    email: str | None = Field(default=None, max_length=254)
    display_name: str | None = Field(default=None, max_length=256)
    disabled: bool | None = None
    unlock: bool = False

    _pw = field_validator("password")(_password)


class GroupCreate(_Strict):
    name: str = Field(min_length=1, max_length=128)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not USER_NAME.fullmatch(v):
            raise ValueError("1-128 of letters, digits and '._@-', starting with a letter or digit")
        return v


class ClientCreate(_Strict):
    name: str = Field(min_length=1, max_length=128)
    public: bool = False
    redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    grant_types: list[str] = Field(default_factory=lambda: ["client_credentials"], max_length=4)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not USER_NAME.fullmatch(v):
            raise ValueError("1-128 of letters, digits and '._@-', starting with a letter or digit")
        return v

    @field_validator("grant_types")
    @classmethod
    def _grants(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - GRANT_TYPES)
        if bad:
            raise ValueError(f"unknown grant types {bad}; known: {sorted(GRANT_TYPES)}")
        return sorted(set(v))

    @field_validator("redirect_uris")
    @classmethod
    def _uris(cls, v: list[str]) -> list[str]:
        for uri in v:
            if len(uri) > 2048 or not re.match(
                r"^(https://|http://(127\.0\.0\.1|localhost)[:/])", uri
            ):
                raise ValueError(
                    f"{uri[:80]!r}: redirect URIs must be https:// or http://127.0.0.1/localhost"
                )
            if "#" in uri:
                raise ValueError(f"{uri[:80]!r}: redirect URIs may not have a fragment")
        return v


class AssignmentCreate(_Strict):
    role: str = Field(min_length=1, max_length=32)
    user: str | None = Field(default=None, max_length=128)
    group: str | None = Field(default=None, max_length=128)
    client: str | None = Field(default=None, max_length=128)
    project: str | None = Field(default=None, max_length=63)


class LdapBody(_Strict):
    url: str = Field(min_length=8, max_length=2048)
    bind_dn: str = Field(min_length=1, max_length=1024)
    bind_password: str = Field(min_length=1, max_length=1024)
    user_base: str = Field(min_length=1, max_length=1024)
    group_base: str = Field(min_length=1, max_length=1024)
    user_filter: str = Field(default="(uid={username})", max_length=1024)
    group_filter: str = Field(
        default="(|(member={dn})(uniqueMember={dn})(memberUid={username}))", max_length=1024
    )
    attributes: dict[str, str] = Field(
        default_factory=lambda: {"username": "uid", "email": "mail", "display_name": "cn"}
    )
    group_name_attribute: str = Field(default="cn", max_length=128)
    group_roles: dict[str, str] = Field(default_factory=dict)
    check: bool = True  # bind and look up both bases before saving


# -- views ---------------------------------------------------------------------------------------


def tenant_view(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "created_at": t.created_at.isoformat()}


def user_view(u: User, now: float | None = None) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "display_name": u.display_name,
        "source": u.source,
        "disabled": u.disabled,
        "locked": bool(u.locked_until and (now is None or u.locked_until > now)),
        "created_at": u.created_at.isoformat(),
    }


def group_view(s: Session, g: Group) -> dict[str, Any]:
    members = s.scalars(
        select(User.name)
        .join(GroupMember, GroupMember.user_id == User.id)
        .where(GroupMember.group_id == g.id)
        .order_by(User.name)
    )
    return {
        "id": g.id,
        "name": g.name,
        "members": list(members),
        "created_at": g.created_at.isoformat(),
    }


def client_view(c: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": c.id,
        "name": c.name,
        "public": c.secret_hash is None,
        "redirect_uris": list(c.redirect_uris),
        "grant_types": list(c.grant_types),
        "created_at": c.created_at.isoformat(),
    }


def assignment_view(s: Session, a: RoleAssignment) -> dict[str, Any]:
    subject_name: str | None = None
    model = {"user": User, "group": Group, "client": OAuthClient}.get(a.subject_kind)
    if model is not None:
        obj = s.get(model, a.subject_id)
        subject_name = getattr(obj, "name", None)
    project = s.get(Project, a.project_id) if a.project_id else None
    return {
        "id": a.id,
        "role": a.role,
        "scope": a.scope,
        "subject": {"kind": a.subject_kind, "id": a.subject_id, "name": subject_name},
        "project": project.name if project else None,
        "created_at": a.created_at.isoformat(),
    }


# -- lookups inside the caller's tenant ------------------------------------------------------------


def _tenant_for(s: Session, principal: Principal, ref: str) -> Tenant:
    """A tenant by name or id: any for a system admin, else only the caller's own."""
    t = s.scalar(select(Tenant).where((Tenant.name == ref) | (Tenant.id == ref)))
    if t is None or (t.id != principal.tenant_id and not principal.is_system_admin):
        raise NotFound(f"tenant {ref!r} does not exist")
    return t


_Named = TypeVar("_Named", User, Group, OAuthClient)


def _in_tenant(
    s: Session, principal: Principal, model: type[_Named], ref: str, what: str
) -> _Named:
    """A user, group or client of the caller's tenant by id or name; 404 otherwise."""
    row = s.scalar(
        select(model).where(
            model.tenant_id == principal.tenant_id, (model.id == ref) | (model.name == ref)
        )
    )
    if row is None:
        raise NotFound(f"{what} {ref!r} does not exist")
    return row


def _user(s: Session, principal: Principal, ref: str) -> User:
    return _in_tenant(s, principal, User, user_name(ref), "user")


def _group(s: Session, principal: Principal, ref: str) -> Group:
    return _in_tenant(s, principal, Group, ref, "group")


def _client(s: Session, principal: Principal, ref: str) -> OAuthClient:
    return _in_tenant(s, principal, OAuthClient, ref, "client")


def _audit(s: Session, principal: Principal, action: str, target: str, **detail: Any) -> None:
    record(
        s,
        tenant_id=principal.tenant_id,
        actor=actor_of(principal),
        action=action,
        target=target,
        detail=detail,
    )


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


def delete_tenant(svc: Services, principal: Principal, ref: str) -> None:
    with svc.db.session() as s:
        t = _tenant_for(s, principal, ref)
        if t.name == "default":
            raise Conflict("the default tenant cannot be deleted")
        if t.id == principal.tenant_id:
            raise Conflict("a tenant cannot delete itself")
        projects = list(s.scalars(select(Project.id).where(Project.tenant_id == t.id)))
        for model, label in ((Cell, "cells"), (Volume, "volumes"), (Cluster, "clusters")):
            n = s.scalar(
                select(func.count()).select_from(model).where(model.project_id.in_(projects))
            )
            if n:
                raise Conflict(f"tenant {t.name!r} still has {n} {label}; delete them first")
        users = list(s.scalars(select(User.id).where(User.tenant_id == t.id)))
        groups = list(s.scalars(select(Group.id).where(Group.tenant_id == t.id)))
        s.execute(delete(GroupMember).where(GroupMember.group_id.in_(groups)))
        s.execute(delete(RoleAssignment).where(RoleAssignment.tenant_id == t.id))
        s.execute(
            delete(RoleAssignment).where(
                RoleAssignment.subject_kind == "user", RoleAssignment.subject_id.in_(users)
            )
        )
        s.execute(delete(RefreshToken).where(RefreshToken.tenant_id == t.id))
        s.execute(delete(Credential).where(Credential.tenant_id == t.id))
        s.execute(delete(Group).where(Group.tenant_id == t.id))
        s.execute(delete(OAuthClient).where(OAuthClient.tenant_id == t.id))
        s.execute(delete(User).where(User.tenant_id == t.id))
        s.execute(delete(LdapConfig).where(LdapConfig.tenant_id == t.id))
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


# -- groups -----------------------------------------------------------------------------------------


def list_groups(svc: Services, principal: Principal) -> dict[str, Any]:
    with svc.db.reader() as s:
        groups = s.scalars(
            select(Group).where(Group.tenant_id == principal.tenant_id).order_by(Group.name)
        )
        return {"items": [group_view(s, g) for g in groups], "next_cursor": None}


def get_group(svc: Services, principal: Principal, ref: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        return group_view(s, _group(s, principal, ref))


def create_group(svc: Services, s: Session, principal: Principal, body: GroupCreate) -> Outcome:
    if s.scalar(
        select(Group.id).where(Group.tenant_id == principal.tenant_id, Group.name == body.name)
    ):
        raise Conflict(f"a group named {body.name!r} already exists")
    g = Group(id=new_id("grp"), tenant_id=principal.tenant_id, name=body.name, created_at=utcnow())
    s.add(g)
    s.flush()
    _audit(s, principal, "group.create", g.name)
    return Outcome(201, group_view(s, g), f"/v1/groups/{g.id}")


def delete_group(svc: Services, principal: Principal, ref: str) -> None:
    with svc.db.session() as s:
        g = _group(s, principal, ref)
        s.execute(delete(GroupMember).where(GroupMember.group_id == g.id))
        s.execute(
            delete(RoleAssignment).where(
                RoleAssignment.subject_kind == "group", RoleAssignment.subject_id == g.id
            )
        )
        _audit(s, principal, "group.delete", g.name)
        s.delete(g)


def add_member(svc: Services, principal: Principal, group: str, user: str) -> dict[str, Any]:
    with svc.db.session() as s:
        g, u = _group(s, principal, group), _user(s, principal, user)
        if s.get(GroupMember, (g.id, u.id)) is None:
            s.add(GroupMember(group_id=g.id, user_id=u.id))
            s.flush()
        _audit(s, principal, "group.add_member", g.name, user=u.name)
        return group_view(s, g)


def remove_member(svc: Services, principal: Principal, group: str, user: str) -> dict[str, Any]:
    with svc.db.session() as s:
        g, u = _group(s, principal, group), _user(s, principal, user)
        m = s.get(GroupMember, (g.id, u.id))
        if m is None:
            raise NotFound(f"user {u.name!r} is not a member of group {g.name!r}")
        s.delete(m)
        s.flush()
        _audit(s, principal, "group.remove_member", g.name, user=u.name)
        return group_view(s, g)


# -- OAuth clients (service accounts are confidential clients) -----------------------------------


def list_clients(svc: Services, principal: Principal) -> dict[str, Any]:
    with svc.db.reader() as s:
        cs = s.scalars(
            select(OAuthClient)
            .where(OAuthClient.tenant_id == principal.tenant_id)
            .order_by(OAuthClient.name)
        )
        return {"items": [client_view(c) for c in cs], "next_cursor": None}


def get_client(svc: Services, principal: Principal, ref: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        return client_view(_client(s, principal, ref))


def create_client(svc: Services, s: Session, principal: Principal, body: ClientCreate) -> Outcome:
    if s.scalar(
        select(OAuthClient.id).where(
            OAuthClient.tenant_id == principal.tenant_id, OAuthClient.name == body.name
        )
    ):
        raise Conflict(f"a client named {body.name!r} already exists")
    if body.public and "client_credentials" in body.grant_types:
        raise ValidationFailed.field("grant_types", "a public client cannot use client_credentials")
    if "authorization_code" in body.grant_types and not body.redirect_uris:
        raise ValidationFailed.field("redirect_uris", "authorization_code needs a redirect URI")
    secret = None if body.public else generate_secret(32)
    c = OAuthClient(
        id=new_id("cli"),
        tenant_id=principal.tenant_id,
        name=body.name,
        secret_hash=hash_secret(secret) if secret else None,
        redirect_uris=list(body.redirect_uris),
        grant_types=list(body.grant_types),
        created_at=utcnow(),
    )
    s.add(c)
    s.flush()
    _audit(s, principal, "client.create", c.name, client_id=c.id)
    out = client_view(c)
    if secret:
        out["client_secret"] = secret  # shown once
    return Outcome(201, out, f"/v1/clients/{c.id}")


def rotate_client_secret(svc: Services, principal: Principal, ref: str) -> dict[str, Any]:
    with svc.db.session() as s:
        c = _client(s, principal, ref)
        if c.secret_hash is None:
            raise Conflict(f"client {c.name!r} is public: it has no secret")
        secret = generate_secret(32)
        c.secret_hash = hash_secret(secret)
        _audit(s, principal, "client.rotate_secret", c.name)
        return {**client_view(c), "client_secret": secret}


def delete_client(svc: Services, principal: Principal, ref: str) -> None:
    from cellplane.identity.authn import subject_changed

    with svc.db.session() as s:
        c = _client(s, principal, ref)
        s.execute(
            delete(RoleAssignment).where(
                RoleAssignment.subject_kind == "client", RoleAssignment.subject_id == c.id
            )
        )
        s.execute(delete(RefreshToken).where(RefreshToken.client_id == c.id))
        _audit(s, principal, "client.delete", c.name)
        s.delete(c)
    subject_changed(c.id)  # its access tokens stop working now, not at expiry


# -- role assignments --------------------------------------------------------------------------------


def list_assignments(svc: Services, principal: Principal) -> dict[str, Any]:
    with svc.db.reader() as s:
        q = select(RoleAssignment).where(RoleAssignment.tenant_id == principal.tenant_id)
        rows = list(s.scalars(q.order_by(RoleAssignment.id)))
        if principal.is_system_admin:
            rows += list(s.scalars(select(RoleAssignment).where(RoleAssignment.scope == "system")))
        return {"items": [assignment_view(s, a) for a in rows], "next_cursor": None}


def create_assignment(
    svc: Services, s: Session, principal: Principal, body: AssignmentCreate
) -> Outcome:
    named = [
        (k, v)
        for k, v in (("user", body.user), ("group", body.group), ("client", body.client))
        if v
    ]
    if len(named) != 1:
        raise ValidationFailed.field("user", "name exactly one of user, group or client")
    kind, ref = named[0]
    subject: User | Group | OAuthClient
    if kind == "user":
        subject = _user(s, principal, ref)
    elif kind == "group":
        subject = _group(s, principal, ref)
    else:
        subject = _client(s, principal, ref)
    if body.role == "system-admin":
        scope: Literal["system", "tenant", "project"] = "system"
        if not principal.is_system_admin:
            raise Forbidden("only system admins grant system-admin")
        if body.project:
            raise ValidationFailed.field("project", "system-admin is not a project role")
    else:
        scope = "project" if body.project else "tenant"
    if body.role not in ASSIGNABLE_ROLES[scope]:
        raise ValidationFailed.field(
            "role",
            f"{body.role!r} is not a {scope} role; one of {sorted(ASSIGNABLE_ROLES[scope])}",
        )
    project_id = None
    if body.project:
        project = s.scalar(
            select(Project).where(
                Project.tenant_id == principal.tenant_id,
                (Project.name == body.project) | (Project.id == body.project),
            )
        )
        if project is None:
            raise NotFound(f"project {body.project!r} does not exist")
        project_id = project.id
    tenant_id = None if scope == "system" else principal.tenant_id
    dup = s.scalar(
        select(RoleAssignment.id).where(
            RoleAssignment.subject_kind == kind,
            RoleAssignment.subject_id == subject.id,
            RoleAssignment.role == body.role,
            RoleAssignment.scope == scope,
            RoleAssignment.project_id.is_(None)
            if project_id is None
            else RoleAssignment.project_id == project_id,
        )
    )
    if dup:
        raise Conflict(f"{kind} {ref!r} already has role {body.role!r} there")
    a = RoleAssignment(
        id=new_id("rol"),
        scope=scope,
        tenant_id=tenant_id,
        project_id=project_id,
        subject_kind=kind,
        subject_id=subject.id,
        role=body.role,
        created_at=utcnow(),
    )
    s.add(a)
    s.flush()
    _audit(s, principal, "role.assign", f"{kind}:{ref}", role=body.role, project=body.project)
    return Outcome(201, assignment_view(s, a), f"/v1/role-assignments/{a.id}")


def delete_assignment(svc: Services, principal: Principal, assignment_id: str) -> None:
    with svc.db.session() as s:
        a = s.get(RoleAssignment, assignment_id)
        visible = a is not None and (
            a.tenant_id == principal.tenant_id
            or (a.scope == "system" and principal.is_system_admin)
        )
        if a is None or not visible:
            raise NotFound(f"role assignment {assignment_id!r} does not exist")
        if a.scope == "system":
            others = s.scalar(
                select(func.count())
                .select_from(RoleAssignment)
                .where(RoleAssignment.scope == "system", RoleAssignment.id != a.id)
            )
            if not others:
                raise Conflict("this is the last system-admin assignment; grant another first")
        _audit(s, principal, "role.revoke", f"{a.subject_kind}:{a.subject_id}", role=a.role)
        s.delete(a)


# -- LDAP federation -------------------------------------------------------------------------------


def _ldap_view(c: LdapConfig) -> dict[str, Any]:
    return {
        "url": c.url,
        "bind_dn": c.bind_dn,
        "user_base": c.user_base,
        "group_base": c.group_base,
        "user_filter": c.user_filter,
        "group_filter": c.group_filter,
        "attributes": {k: v for k, v in c.attributes.items() if k != "group_name_attribute"},
        "group_name_attribute": str(c.attributes.get("group_name_attribute", "cn")),
        "group_roles": dict(c.group_roles),
    }


def get_ldap(svc: Services, principal: Principal) -> dict[str, Any]:
    with svc.db.reader() as s:
        c = s.get(LdapConfig, principal.tenant_id)
        if c is None:
            raise NotFound("this tenant has no LDAP federation")
        return _ldap_view(c)


#: The one answer to a failed LDAP settings check, whatever failed (refused, timed out, TLS,
#: bind refused, base missing): the details would make the check a port scanner. They go to a
#: system-level audit event (``ldap.check``, tenant-less: system admins read it with
#: ``all_tenants=true``), and the route answers no sooner than `LDAP_CHECK_FLOOR_S`.
LDAP_CHECK_FAILED = (
    "the directory could not be reached, or refused these settings; "
    "ask the operator for the details (audit event ldap.check)"
)
#: A failed check answers no sooner than this (the LDAP connect timeout), so that its timing
#: does not tell a refused port from a silent one.
LDAP_CHECK_FLOOR_S = 5.0


class LdapCheckFailed(ValidationFailed):
    """The settings check failed (the caller gets `LDAP_CHECK_FAILED`)."""

    def __init__(self) -> None:
        super().__init__([FieldError("url", LDAP_CHECK_FAILED)])


def set_ldap(svc: Services, principal: Principal, body: LdapBody) -> dict[str, Any]:
    from cellplane.identity.ldap import (
        HostPolicy,
        LdapError,
        LdapNotAllowed,
        LdapSettings,
        check_settings,
    )

    try:
        settings = LdapSettings(
            url=body.url,
            bind_dn=body.bind_dn,
            bind_password=body.bind_password,
            user_base=body.user_base,
            group_base=body.group_base,
            user_filter=body.user_filter,
            group_filter=body.group_filter,
            attributes=body.attributes,
            group_name_attribute=body.group_name_attribute,
            group_roles=body.group_roles,
        )
    except ValueError as exc:
        raise ValidationFailed.field("ldap", str(exc)) from None
    try:
        HostPolicy.from_env().check(body.url)
    except LdapNotAllowed as exc:
        raise ValidationFailed.field("url", str(exc)) from None
    if body.check:
        try:
            check_settings(settings)
        except LdapError as exc:
            with svc.db.session() as s:
                record(
                    s,
                    tenant_id=None,  # for system admins only: see LDAP_CHECK_FAILED
                    actor=actor_of(principal),
                    action="ldap.check",
                    target=body.url,
                    outcome="failure",
                    detail={"tenant_id": principal.tenant_id, "error": str(exc)[:1000]},
                )
            raise LdapCheckFailed() from None
    with svc.db.session() as s:
        c = s.get(LdapConfig, principal.tenant_id)
        if c is None:
            c = LdapConfig(tenant_id=principal.tenant_id)
            s.add(c)
        c.url, c.bind_dn, c.bind_secret = body.url, body.bind_dn, body.bind_password
        c.user_base, c.group_base = body.user_base, body.group_base
        c.user_filter, c.group_filter = body.user_filter, body.group_filter
        c.attributes = {**body.attributes, "group_name_attribute": body.group_name_attribute}
        c.group_roles = dict(body.group_roles)
        c.updated_at = utcnow()
        s.flush()
        _audit(s, principal, "ldap.set", body.url)
        return _ldap_view(c)


def delete_ldap(svc: Services, principal: Principal) -> None:
    with svc.db.session() as s:
        c = s.get(LdapConfig, principal.tenant_id)
        if c is None:
            raise NotFound("this tenant has no LDAP federation")
        _audit(s, principal, "ldap.delete", c.url)
        s.delete(c)
