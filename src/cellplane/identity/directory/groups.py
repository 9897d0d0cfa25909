"""Groups and their members, OAuth clients (service accounts), and role assignments.

Called by `api/routes_directory.py`.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, Forbidden, NotFound, ValidationFailed
from cellplane.identity.directory.bodies import (
    AssignmentCreate,
    ClientCreate,
    GroupCreate,
)
from cellplane.identity.directory.common import (
    _audit,
    _client,
    _group,
    _user,
    assignment_view,
    client_view,
    group_view,
)
from cellplane.identity.passwords import generate_secret, hash_secret
from cellplane.identity.rbac import ASSIGNABLE_ROLES, Principal
from cellplane.ids import new_id, utcnow
from cellplane.services.context import Services
from cellplane.services.idempotency import Outcome
from cellplane.state.identity_models import (
    Group,
    GroupMember,
    OAuthClient,
    RefreshToken,
    RoleAssignment,
    User,
)
from cellplane.state.models import Project

__all__ = [
    "add_member",
    "create_assignment",
    "create_client",
    "create_group",
    "delete_assignment",
    "delete_client",
    "delete_group",
    "get_client",
    "get_group",
    "list_assignments",
    "list_clients",
    "list_groups",
    "remove_member",
    "rotate_client_secret",
]

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
