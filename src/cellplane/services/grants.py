"""Who holds which role where: role assignments -> token claims -> Principal.

A user's roles are their own assignments plus those of their groups (and, for LDAP users, the
roles their directory groups map to, passed in as `extra_roles`). Access tokens carry the result
as claims, so the API builds a Principal from a verified token without touching the database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cellplane.services.context import Principal
from cellplane.state.identity_models import GroupMember, RoleAssignment

__all__ = ["claims_for", "principal_from_claims", "roles_of"]


def roles_of(
    s: Session,
    tenant_id: str,
    subject_kind: str,
    subject_id: str,
    extra_roles: Iterable[str] = (),
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """(roles over the tenant incl. system-admin, {project id: roles}) of a user or client."""
    subjects = [(subject_kind, subject_id)]
    if subject_kind == "user":
        groups = s.scalars(select(GroupMember.group_id).where(GroupMember.user_id == subject_id))
        subjects += [("group", g) for g in groups]
    conditions = [
        (RoleAssignment.subject_kind == kind) & (RoleAssignment.subject_id == sid)
        for kind, sid in subjects
    ]
    rows = s.scalars(select(RoleAssignment).where(or_(*conditions)))
    tenant_roles: set[str] = set(extra_roles)
    projects: dict[str, set[str]] = defaultdict(set)
    for a in rows:
        if a.scope == "system":
            tenant_roles.add(a.role)
        elif a.tenant_id != tenant_id:
            continue  # assignments never cross tenants
        elif a.scope == "tenant":
            tenant_roles.add(a.role)
        elif a.scope == "project" and a.project_id:
            projects[a.project_id].add(a.role)
    return tuple(sorted(tenant_roles)), {p: tuple(sorted(r)) for p, r in sorted(projects.items())}


def claims_for(
    s: Session,
    *,
    tenant_id: str,
    tenant: str,
    subject_kind: str,
    subject_id: str,
    name: str,
    extra_roles: Iterable[str] = (),
) -> dict[str, Any]:
    """The Cellplane claims of an access token (on top of iss/sub/aud/exp/...)."""
    roles, projects = roles_of(s, tenant_id, subject_kind, subject_id, extra_roles)
    return {
        "tenant": tenant,
        "tid": tenant_id,
        "kind": "user" if subject_kind == "user" else "service",
        "name": name,
        "roles": list(roles),
        "projects": {p: list(r) for p, r in projects.items()},
    }


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    projects = claims.get("projects") or {}
    if not isinstance(projects, dict):
        projects = {}
    return Principal(
        subject=str(claims["sub"]),
        tenant_id=str(claims.get("tid", "")),
        tenant=str(claims.get("tenant", "")),
        roles=tuple(str(r) for r in claims.get("roles") or ()),
        kind=str(claims.get("kind", "user")),
        project_roles=tuple(
            (str(p), tuple(str(r) for r in roles)) for p, roles in sorted(projects.items())
        ),
        name=str(claims.get("name", "")),
    )
