"""Answers of the directory (tenants, users, groups, clients, roles, LDAP, keys, audit), quotas,
certificates and the OpenID Connect provider."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from cellplane.api.models.base import OpenView, Time, View
from cellplane.api.models.resources import IsolationCell

__all__ = [
    "AssignmentSubject",
    "AuditEvent",
    "AuditList",
    "Certificate",
    "CertificateList",
    "Client",
    "ClientList",
    "ClientWithSecret",
    "Empty",
    "Group",
    "GroupList",
    "Introspection",
    "IssuedCertificate",
    "Jwks",
    "KeyRotation",
    "LdapSettings",
    "OAuthError",
    "OpenIdConfiguration",
    "Quota",
    "QuotaAmounts",
    "RoleAssignment",
    "RoleAssignmentList",
    "Tenant",
    "TenantCreated",
    "TenantList",
    "TenantUpdated",
    "TokenAnswer",
    "User",
    "UserCreated",
    "UserInfo",
    "UserList",
]


# --- directory ---------------------------------------------------------------------------------


class Tenant(View):
    id: str
    name: str
    min_isolation: str | None = Field(
        description="The weakest isolation class its cells may use (`standard`, `sandbox`); "
        "null: no policy.",
    )
    created_at: Time


class TenantUpdated(Tenant):
    cells_below_policy: list[IsolationCell] = Field(
        default_factory=list,
        description="Existing cells below the new minimum: reported, never changed.",
    )


class TenantList(View):
    items: list[Tenant]
    next_cursor: str | None


class User(View):
    id: str
    name: str
    email: str | None
    display_name: str | None
    source: str = Field(description="`local` or `ldap`.")
    disabled: bool
    locked: bool
    created_at: Time


class UserCreated(User):
    password: str | None = Field(
        default=None, description="The generated password, shown once (absent when one was set)."
    )


class UserList(View):
    items: list[User]
    next_cursor: str | None


class TenantCreated(Tenant):
    admin: UserCreated


class Group(View):
    id: str
    name: str
    members: list[str] = Field(description="The members' user names.")
    created_at: Time


class GroupList(View):
    items: list[Group]
    next_cursor: str | None


class Client(View):
    client_id: str
    name: str
    public: bool
    redirect_uris: list[str]
    grant_types: list[str]
    created_at: Time


class ClientWithSecret(Client):
    client_secret: str | None = Field(default=None, description="Shown once; none if public.")


class ClientList(View):
    items: list[Client]
    next_cursor: str | None


class AssignmentSubject(View):
    kind: str
    id: str
    name: str | None


class RoleAssignment(View):
    id: str
    role: str
    scope: str
    subject: AssignmentSubject
    project: str | None
    created_at: Time


class RoleAssignmentList(View):
    items: list[RoleAssignment]
    next_cursor: str | None


class LdapSettings(View):
    url: str
    bind_dn: str
    user_base: str
    group_base: str
    user_filter: str
    group_filter: str
    attributes: dict[str, str]
    group_name_attribute: str
    group_roles: dict[str, str]


class Jwks(View):
    keys: list[OpenView]


class KeyRotation(View):
    kid: str
    jwks: Jwks


class AuditEvent(View):
    id: str
    at: Time
    tenant_id: str | None
    actor: str
    action: str
    target: str | None
    outcome: str
    source: str | None
    detail: dict[str, Any] | None


class AuditList(View):
    items: list[AuditEvent]
    next_cursor: str | None


class QuotaAmounts(View):
    cpu: float | None
    memory_mb: int | None
    disk_gb: int | None
    cells: int | None
    volumes_gb: int | None


class Quota(View):
    scope: str = Field(description="`tenant` or `project`.")
    tenant: str
    project: str | None
    limits: QuotaAmounts = Field(description="null: no limit.")
    usage: QuotaAmounts
    allocated: QuotaAmounts | None = Field(
        default=None, description="Tenant scope only: what its projects' quotas hand out."
    )
    updated_at: Time | None = Field(default=None, description="Absent until a limit is set.")


class Certificate(View):
    serial: str
    tenant_id: str | None
    subject: str
    profile: str
    owner: str
    not_after: Time
    created_at: Time
    revoked_at: Time | None


class IssuedCertificate(Certificate):
    certificate: str = Field(description="The certificate, PEM.")
    chain: str = Field(description="The certificate then its issuer's, PEM.")


class CertificateList(View):
    items: list[Certificate]


# --- the OpenID Connect provider (/identity/{tenant}) -------------------------------------------


class OAuthError(View):
    """An OAuth error (RFC 6749 section 5.2), not a problem document."""

    error: str = Field(description="invalid_request, invalid_client, invalid_grant, ...")
    error_description: str | None = None


class OpenIdConfiguration(OpenView):
    """OpenID Provider metadata (OpenID Connect Discovery 1.0, section 3)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class TokenAnswer(View):
    token_type: str
    access_token: str
    expires_in: int
    refresh_token: str | None = None
    id_token: str | None = Field(default=None, description="With the `openid` scope.")
    scope: str | None = None


class Introspection(OpenView):
    """RFC 7662: `active`, and the token's claims when it is."""

    active: bool


class UserInfo(OpenView):
    """The signed-in user's claims, as their scopes allow."""

    sub: str


class Empty(View):
    """An empty JSON object."""
