"""Request bodies of the directory routes (pydantic, strict: unknown fields are refused).

Built by FastAPI from `api/routes_directory.py`'s request bodies and passed to the functions of
`tenants`, `groups` and `federation`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cellplane.validation import DNS_LABEL, DNS_LABEL_MSG, user_name

__all__ = [
    "GRANT_TYPES",
    "MIN_PASSWORD",
    "TENANT_NAME",
    "USER_NAME",
    "AdminBody",
    "AssignmentCreate",
    "ClientCreate",
    "GroupCreate",
    "IsolationPolicy",
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


def _directory_name(v: str) -> str:
    """The name of a user, group or OAuth client, matched whole."""
    if not USER_NAME.fullmatch(v):
        raise ValueError("1-128 of letters, digits and '._@-', starting with a letter or digit")
    return v


def _password(v: str | None) -> str | None:
    if v is not None and len(v) < MIN_PASSWORD:
        raise ValueError(f"must be at least {MIN_PASSWORD} characters")
    return v


class AdminBody(_Strict):
    name: str = Field(default="admin", min_length=1, max_length=128)
    password: str | None = Field(default=None, max_length=1024)
    email: str | None = Field(default=None, max_length=254)

    _pw = field_validator("password")(_password)


class IsolationPolicy(_Strict):
    """`PATCH /v1/tenants/{tenant}`: the weakest isolation class the tenant's cells may use
    (`standard` or null: no minimum)."""

    isolation: Literal["standard", "sandbox"] | None


class TenantCreate(_Strict):
    name: str = Field(min_length=1, max_length=63)
    admin: AdminBody = Field(default_factory=AdminBody)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TENANT_NAME.fullmatch(v):
            raise ValueError(DNS_LABEL_MSG)
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
        return user_name(_directory_name(v))


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
        return _directory_name(v)


class ClientCreate(_Strict):
    name: str = Field(min_length=1, max_length=128)
    public: bool = False
    redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    grant_types: list[str] = Field(default_factory=lambda: ["client_credentials"], max_length=4)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _directory_name(v)

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
