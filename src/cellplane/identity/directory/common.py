"""Views of directory rows (what the API answers) and lookups inside the caller's tenant.

Used by the other modules of `identity.directory`: another tenant's user, group or client is
looked up as not found (404), exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import NotFound
from cellplane.identity.rbac import Principal
from cellplane.services.audit import actor_of, record
from cellplane.state.identity_models import (
    Group,
    GroupMember,
    OAuthClient,
    RoleAssignment,
    User,
)
from cellplane.state.models import Project, Tenant
from cellplane.validation import user_name

__all__ = [
    "assignment_view",
    "client_view",
    "group_view",
    "tenant_view",
    "user_view",
]

# -- views ---------------------------------------------------------------------------------------


def tenant_view(t: Tenant) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "min_isolation": t.min_isolation,
        "created_at": t.created_at.isoformat(),
    }


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
