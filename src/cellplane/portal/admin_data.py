"""What the operators' pages show and change: tenants, projects, users, groups, clients, role
assignments (identity's directory), the audit log and certificates, with the caller's Principal.

As `data` for the developers' pages: each function checks the permission its REST route
declares (`needs`), then calls the same service as the API; the services check the tenant.
Every function is synchronous (database work): the routes run them in the thread pool.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cellplane.identity import directory, pki
from cellplane.identity.directory import (
    AssignmentCreate,
    ClientCreate,
    GroupCreate,
    TenantCreate,
    UserCreate,
    UserUpdate,
)
from cellplane.portal.data import needs
from cellplane.services import audit, projects
from cellplane.services.context import Principal, Services
from cellplane.services.schemas import ProjectCreate

__all__ = [
    "assign",
    "audit_events",
    "certificates",
    "create_client",
    "create_group",
    "create_project",
    "create_tenant",
    "create_user",
    "delete_client",
    "delete_group",
    "delete_project",
    "delete_tenant",
    "delete_user",
    "directory_lists",
    "member",
    "project_list",
    "revoke_certificate",
    "set_user_disabled",
    "tenant",
    "tenant_list",
    "unassign",
]


def _items(view: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = view["items"]
    return items


def tenant_list(svc: Services, p: Principal) -> list[dict[str, Any]]:
    needs(p, "tenants:read")
    return _items(directory.list_tenants(svc, p))


def tenant(svc: Services, p: Principal, name: str) -> dict[str, Any]:
    needs(p, "tenants:read")
    return directory.get_tenant(svc, p, name)


def create_tenant(svc: Services, p: Principal, body: TenantCreate) -> dict[str, Any]:
    """The tenant, its `default` project and first admin (a generated password, shown once)."""
    needs(p, "tenants:write")
    with svc.db.session() as s:
        return dict(directory.create_tenant(svc, s, p, body).body or {})


def delete_tenant(svc: Services, p: Principal, name: str) -> None:
    needs(p, "tenants:write")
    directory.delete_tenant(svc, p, name)


def project_list(svc: Services, p: Principal) -> list[dict[str, Any]]:
    needs(p, "projects:read")
    return _items(projects.list_projects(svc, p))


def create_project(svc: Services, p: Principal, body: ProjectCreate) -> None:
    needs(p, "projects:write")
    with svc.db.session() as s:
        projects.create(svc, s, p, body)


def delete_project(svc: Services, p: Principal, name: str) -> None:
    needs(p, "projects:write")
    projects.delete(svc, p, name)


def directory_lists(svc: Services, p: Principal) -> dict[str, list[dict[str, Any]] | None]:
    """Users, groups, clients and role assignments of the caller's tenant; None for a list the
    caller may not read (the page leaves it out)."""
    out: dict[str, list[dict[str, Any]] | None] = {}
    for key, perm, fn in (
        ("users", "users:read", directory.list_users),
        ("groups", "groups:read", directory.list_groups),
        ("clients", "clients:read", directory.list_clients),
        ("assignments", "roles:read", directory.list_assignments),
    ):
        out[key] = _items(fn(svc, p)) if p.can(perm) else None
    return out


def create_user(svc: Services, p: Principal, body: UserCreate) -> dict[str, Any]:
    needs(p, "users:write")
    with svc.db.session() as s:
        return dict(directory.create_user(svc, s, p, body).body or {})


def delete_user(svc: Services, p: Principal, user: str) -> None:
    needs(p, "users:write")
    directory.delete_user(svc, p, user)


def set_user_disabled(svc: Services, p: Principal, user: str, disabled: bool) -> None:
    """Disable the user (no sign-in, their tokens refused at once), or enable them again."""
    needs(p, "users:write")
    directory.update_user(svc, p, user, UserUpdate(disabled=disabled))


def delete_group(svc: Services, p: Principal, group: str) -> None:
    needs(p, "groups:write")
    directory.delete_group(svc, p, group)


def delete_client(svc: Services, p: Principal, client: str) -> None:
    needs(p, "clients:write")
    directory.delete_client(svc, p, client)


def create_group(svc: Services, p: Principal, body: GroupCreate) -> None:
    needs(p, "groups:write")
    with svc.db.session() as s:
        directory.create_group(svc, s, p, body)


def member(svc: Services, p: Principal, group: str, user: str, add: bool) -> None:
    """Add `user` to `group`, or take them out."""
    needs(p, "groups:write")
    (directory.add_member if add else directory.remove_member)(svc, p, group, user)


def create_client(svc: Services, p: Principal, body: ClientCreate) -> dict[str, Any]:
    """The client; a confidential one's secret is in the answer, once."""
    needs(p, "clients:write")
    with svc.db.session() as s:
        return dict(directory.create_client(svc, s, p, body).body or {})


def assign(svc: Services, p: Principal, body: AssignmentCreate) -> None:
    needs(p, "roles:write")
    with svc.db.session() as s:
        directory.create_assignment(svc, s, p, body)


def unassign(svc: Services, p: Principal, assignment_id: str) -> None:
    needs(p, "roles:write")
    directory.delete_assignment(svc, p, assignment_id)


def audit_events(
    svc: Services,
    p: Principal,
    *,
    actor: str | None,
    action: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
    before: str | None,
    limit: int = 50,
) -> dict[str, Any]:
    """A page of the tenant's audit events, newest first (`next_cursor`: the next page)."""
    needs(p, "audit:read")
    return audit.list_events(
        svc,
        p,
        limit=limit,
        before=before,
        action=action,
        outcome=outcome,
        actor=actor,
        since=since,
        until=until,
    )


def certificates(svc: Services, p: Principal) -> list[dict[str, Any]]:
    """The caller's own certificates; the tenant's for a caller with `users:read`."""
    needs(p, "self")
    return _items(pki.list_certificates(svc, p))


def revoke_certificate(svc: Services, p: Principal, serial: str) -> dict[str, Any]:
    needs(p, "self")
    with svc.db.session() as s:
        return pki.revoke(svc, s, p, serial)
