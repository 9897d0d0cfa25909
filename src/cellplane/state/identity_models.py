"""The directory, tokens, quotas, certificates and audit trail of the identity service.

Tenants and projects live in `models.py`; everything here hangs off a tenant. Secrets are never
stored: passwords as argon2id hashes, client secrets, refresh tokens and authorization codes as
SHA-256 digests (they are 256-bit random strings). Nothing here reads the clock or makes ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cellplane.state.models import Base, UTCDateTime

__all__ = [
    "AuditEvent",
    "AuthCode",
    "Group",
    "GroupMember",
    "IssuedCertificateRecord",
    "LdapConfig",
    "OAuthClient",
    "PortalSessionRecord",
    "Quota",
    "RefreshToken",
    "RevokedToken",
    "RoleAssignment",
    "User",
]


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(254))
    display_name: Mapped[str | None] = mapped_column(String(256))
    password_hash: Mapped[str | None] = mapped_column(Text)  # None: LDAP users, or no password
    source: Mapped[str] = mapped_column(String(16), default="local")  # local | ldap
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[float | None] = mapped_column(Float)  # unix seconds
    locked_until: Mapped[float | None] = mapped_column(Float)  # unix seconds
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class GroupMember(Base):
    __tablename__ = "group_members"
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)


class OAuthClient(Base):
    """An OAuth client of one tenant. Confidential when it has a secret; a service account is a
    confidential client using client_credentials (its roles come from role assignments)."""

    __tablename__ = "oauth_clients"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the client_id
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str | None] = mapped_column(String(128))  # None: a public client
    redirect_uris: Mapped[list[Any]] = mapped_column(default=list)
    grant_types: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RoleAssignment(Base):
    """`role` granted to a user, group or client at system, tenant or project scope.

    system scope: tenant_id and project_id are None (only `system-admin`).
    tenant scope: tenant_id set, project_id None (applies to every project of the tenant).
    project scope: both set.
    """

    __tablename__ = "role_assignments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # system | tenant | project
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"), index=True)
    subject_kind: Mapped[str] = mapped_column(String(16))  # user | group | client
    subject_id: Mapped[str] = mapped_column(String(40), index=True)
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RefreshToken(Base):
    """One refresh token of a family; using it marks it used and issues the next of the family.
    Presenting a used token again revokes the whole family (reuse detection)."""

    __tablename__ = "refresh_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    family_id: Mapped[str] = mapped_column(String(40), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(40), index=True)
    client_id: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    # The access token issued together with this refresh token: revoking the family (reuse,
    # a replayed code) revokes it too, not only the refresh tokens.
    access_jti: Mapped[str | None] = mapped_column(String(64))
    access_expires_at: Mapped[float | None] = mapped_column(Float)


class AuthCode(Base):
    __tablename__ = "auth_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str] = mapped_column(String(40))
    redirect_uri: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text, default="")
    nonce: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float)
    family_id: Mapped[str | None] = mapped_column(String(40))  # refresh family it issued


class RevokedToken(Base):
    """An access token revoked before it expires (RFC 7009); kept until it would have expired."""

    __tablename__ = "revoked_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class Quota(Base):
    """Limits of a tenant (project_id None) or of one project; None in a column: no limit."""

    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("tenant_id", "project_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"))
    cpu: Mapped[float | None] = mapped_column(Float)
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    disk_gb: Mapped[int | None] = mapped_column(Integer)
    cells: Mapped[int | None] = mapped_column(Integer)
    volumes_gb: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    __tablename__ = "audit_events"
    # The events of one kind in a time range (a Docker endpoint's events read the deletions).
    __table_args__ = (Index("ix_audit_events_action_at", "action", "at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # time-ordered
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor: Mapped[str] = mapped_column(String(256))  # "user:<id>", "client:<id>", "anonymous"
    action: Mapped[str] = mapped_column(String(64))  # "login", "token", "POST /v1/...", ...
    target: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure | denied
    source: Mapped[str] = mapped_column(String(64), default="")  # client address
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class LdapConfig(Base):
    """LDAP v3 federation of one tenant."""

    __tablename__ = "ldap_configs"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    bind_dn: Mapped[str] = mapped_column(Text)
    bind_secret: Mapped[str] = mapped_column(Text)  # sealed (cellplane.sealing)
    user_base: Mapped[str] = mapped_column(Text)
    user_filter: Mapped[str] = mapped_column(Text)
    group_base: Mapped[str] = mapped_column(Text)
    group_filter: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    group_roles: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IssuedCertificateRecord(Base):
    __tablename__ = "certificates"
    serial: Mapped[str] = mapped_column(String(48), primary_key=True)  # hex
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    subject: Mapped[str] = mapped_column(String(256))
    profile: Mapped[str] = mapped_column(String(16))  # client | server | host
    owner: Mapped[str] = mapped_column(String(64))  # "user:<id>", "host:<id>"
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PortalSessionRecord(Base):
    """A portal session (`cellplane.portal.session`), shared by the server's replicas and kept
    over a restart. Keyed by the SHA-256 of the browser's session id (the id itself, a bearer
    secret, is not stored); the tokens, the CSRF token and a pending sign-in are one sealed JSON
    document (`cellplane.sealing`, the server's secrets key). Times are epoch seconds."""

    __tablename__ = "portal_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    signed_in: Mapped[bool] = mapped_column(Boolean)
    tenant: Mapped[str] = mapped_column(String(63), default="")
    user_name: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float, index=True)
    #: When the access token expires (the portal refreshes it shortly before).
    expires_at: Mapped[float] = mapped_column(Float, default=0.0)
    #: Until when one replica holds the right to spend the refresh token (None: nobody).
    refresh_claim: Mapped[float | None] = mapped_column(Float)
    secrets: Mapped[str] = mapped_column(Text)  # sealed JSON
