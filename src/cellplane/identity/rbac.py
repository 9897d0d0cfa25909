"""Roles and permissions: the role table, `Principal`, and role assignments -> claims -> Principal.

Who calls it: `api/deps.py` (`Principal.can` is the route check), every service (scoping by
`Principal.tenant_id`, `can_in`, `sees_project`), `identity/authn.py` (a verified token or PAT
becomes a Principal), the OIDC provider (claims of a new token) and `identity/directory.py`
(which roles may be assigned where).

`Principal` is the seam the identity service plugs into: routes declare a permission, the auth
dependency turns a bearer token into a Principal, services scope every query by its tenant.

A user's roles are their own assignments plus those of their groups (and, for LDAP users, the
roles their directory groups map to, passed in as `extra_roles`). Access tokens carry the result
as claims, so the API builds a Principal from a verified token without touching the database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session

from cellplane.state.identity_models import GroupMember, RoleAssignment

__all__ = [
    "ASSIGNABLE_ROLES",
    "ROLE_PERMISSIONS",
    "Principal",
    "claims_for",
    "claims_of_roles",
    "principal_from_claims",
    "roles_of",
]

# Which permissions each role grants. Routes declare one permission each (see api/deps.py):
# system scope (the operator's infrastructure and tenants), tenant scope (a tenant's directory,
# projects, quotas, audit) and project scope (cells, volumes, clusters, tasks). `self` is what any
# signed-in caller may do about themselves (whoami, their own client certificate).
_PROJECT_READ = frozenset(
    {"cells:read", "volumes:read", "projects:read", "tasks:read", "quotas:read"}
)
_PROJECT_WRITE = frozenset({"cells:write", "volumes:write"})
_CATALOG = frozenset({"images:read", "flavors:read", "self"})
_TENANT_ADMIN = frozenset(
    {
        "projects:write",
        "users:read",
        "users:write",
        "groups:read",
        "groups:write",
        "clients:read",
        "clients:write",
        "roles:read",
        "roles:write",
        "quotas:write",
        "audit:read",
        "identity:write",
    }
)
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "system-admin": frozenset({"*"}),
    "tenant-admin": _PROJECT_READ | _PROJECT_WRITE | _CATALOG | _TENANT_ADMIN,
    "project-member": _PROJECT_READ | _PROJECT_WRITE | _CATALOG,
    "project-viewer": _PROJECT_READ | _CATALOG,
    "agent": frozenset({"agent"}),
}
#: Roles that may be assigned, by scope.
ASSIGNABLE_ROLES: dict[str, frozenset[str]] = {
    "system": frozenset({"system-admin"}),
    "tenant": frozenset({"tenant-admin", "project-member", "project-viewer"}),
    "project": frozenset({"project-member", "project-viewer"}),
}


def _grants(roles: tuple[str, ...], permission: str) -> bool:
    for role in roles:
        granted = ROLE_PERMISSIONS.get(role, frozenset())
        if permission in granted or ("*" in granted and permission != "agent"):
            return True
    return False


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, a service account (OAuth client) or an agent, of one tenant.

    `roles` hold over the whole tenant (and `system-admin` over the system); `project_roles`
    are (project id, roles) pairs that hold in that project only.
    """

    subject: str
    tenant_id: str
    tenant: str
    roles: tuple[str, ...]
    kind: str = "user"  # user | service | agent
    project_roles: tuple[tuple[str, tuple[str, ...]], ...] = ()
    name: str = ""

    def can(self, permission: str) -> bool:
        """Whether some role of the caller, anywhere, grants `permission` (the route check)."""
        if _grants(self.roles, permission):
            return True
        return any(_grants(roles, permission) for _, roles in self.project_roles)

    def can_in(self, project_id: str, permission: str) -> bool:
        """Whether the caller holds `permission` in the project (of their own tenant)."""
        if _grants(self.roles, permission):
            return True
        return any(pid == project_id and _grants(r, permission) for pid, r in self.project_roles)

    def sees_project(self, project_id: str) -> bool:
        """Whether the project exists for the caller at all (else it answers 404)."""
        if any(r in ROLE_PERMISSIONS and r != "agent" for r in self.roles):
            return True
        return any(pid == project_id for pid, _ in self.project_roles)

    @property
    def is_system_admin(self) -> bool:
        return "system-admin" in self.roles

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.subject}"


_ROLE_ASSIGNMENTS = cast(Table, RoleAssignment.__table__)


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
    ra = _ROLE_ASSIGNMENTS
    conditions = [(ra.c.subject_kind == kind) & (ra.c.subject_id == sid) for kind, sid in subjects]
    # Core on the session's connection, columns only: this runs on every token issued. Core
    # does not autoflush, so flush what the session holds as the ORM query would have.
    if s.autoflush and (s.new or s.dirty or s.deleted):
        s.flush()
    rows = s.connection().execute(
        select(ra.c.scope, ra.c.tenant_id, ra.c.project_id, ra.c.role).where(or_(*conditions))
    )
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
    return claims_of_roles(
        tenant_id=tenant_id,
        tenant=tenant,
        subject_kind=subject_kind,
        name=name,
        roles=roles,
        projects=projects,
    )


def claims_of_roles(
    *,
    tenant_id: str,
    tenant: str,
    subject_kind: str,
    name: str,
    roles: Iterable[str],
    projects: Mapping[str, Iterable[str]],
) -> dict[str, Any]:
    """`claims_for` of roles already read (`roles_of`'s answer)."""
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
