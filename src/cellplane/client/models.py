"""Typed views of the API's answers for the directory, identity, quota, certificate and audit
routes (docs/api.md, "Identity, tenancy and quotas").

The SDK returns the decoded JSON objects unchanged; these TypedDicts only describe them for
type checkers (every key optional: `total=False`), so a field the server adds later is still
there at run time, just not declared. Used by the noun modules of `cellplane.client` and by
callers that want precise types (the CLI).
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = [
    "AuditEvent",
    "AuditPage",
    "Certificate",
    "Group",
    "IssuedCertificate",
    "KeyRotation",
    "LdapSettings",
    "NewUser",
    "OAuthClient",
    "Quota",
    "QuotaLimits",
    "RoleAssignment",
    "RoleSubject",
    "Tenant",
    "TenantAdmin",
    "TenantCreated",
    "User",
    "Whoami",
]


class Whoami(TypedDict, total=False):
    """`GET /v1/whoami`: who the credentials are."""

    subject: str
    name: str | None
    tenant: str
    roles: list[str]
    projects: dict[str, list[str]]  # project id -> roles in it
    kind: str  # user, client, token


class Tenant(TypedDict, total=False):
    id: str
    name: str
    min_isolation: str | None  # the weakest isolation class its cells may use; None: any
    created_at: str
    cells_below_policy: list[dict[str, str]]  # in an update's answer: cells left below it


class TenantAdmin(TypedDict, total=False):
    """The first admin of a new tenant; `password` only when the server generated it."""

    id: str
    name: str
    password: str


class TenantCreated(Tenant, total=False):
    admin: TenantAdmin


class User(TypedDict, total=False):
    id: str
    name: str
    email: str | None
    display_name: str | None
    source: str  # local, ldap
    disabled: bool
    locked: bool
    created_at: str


class NewUser(User, total=False):
    """A created user; `password` only when the server generated it (shown once)."""

    password: str


class Group(TypedDict, total=False):
    id: str
    name: str
    members: list[str]  # user names
    created_at: str


class OAuthClient(TypedDict, total=False):
    """An OAuth client; `client_secret` only in the answer that creates or rotates it."""

    client_id: str
    name: str
    public: bool
    redirect_uris: list[str]
    grant_types: list[str]
    created_at: str
    client_secret: str


class RoleSubject(TypedDict, total=False):
    kind: str  # user, group, client
    id: str
    name: str | None


class RoleAssignment(TypedDict, total=False):
    id: str
    role: str
    scope: str  # system, tenant, project
    subject: RoleSubject
    project: str | None
    created_at: str


class QuotaLimits(TypedDict, total=False):
    """Limits of a quota; None (or an absent key in a PUT) is no limit."""

    cpu: float | None
    memory_mb: int | None
    disk_gb: int | None
    cells: int | None
    volumes_gb: int | None


class Quota(TypedDict, total=False):
    scope: str  # tenant, project
    tenant: str
    project: str | None
    limits: QuotaLimits
    usage: dict[str, float | int]
    allocated: dict[str, float | int]  # a tenant's limits handed to its projects


class Certificate(TypedDict, total=False):
    serial: str
    tenant_id: str
    subject: str
    profile: str
    owner: str
    not_after: str
    created_at: str
    revoked_at: str | None


class IssuedCertificate(Certificate, total=False):
    certificate: str  # PEM
    chain: str  # PEM: the certificate, then the tenant's intermediate


class AuditEvent(TypedDict, total=False):
    id: str
    at: str
    tenant_id: str | None
    actor: str
    action: str
    target: str | None
    outcome: str  # success, failure, denied
    source: str | None
    detail: dict[str, Any] | None


class AuditPage(TypedDict, total=False):
    items: list[AuditEvent]
    next_cursor: str | None  # pass as `before` for the next page


class LdapSettings(TypedDict, total=False):
    """A tenant's LDAP federation (the bind password is never returned)."""

    url: str
    bind_dn: str
    user_base: str
    group_base: str
    user_filter: str
    group_filter: str
    attributes: dict[str, str]
    group_name_attribute: str
    group_roles: dict[str, str]


class KeyRotation(TypedDict, total=False):
    kid: str  # the new signing key
    jwks: dict[str, Any]
