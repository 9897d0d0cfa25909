"""A tenant's LDAP federation settings: read, check (bind and look up both bases) and save,
delete. The check answers one error, no sooner than `LDAP_CHECK_FLOOR_S`, whatever failed.

Called by `api/routes_directory.py` (`/v1/identity/ldap`).
"""

from __future__ import annotations

from typing import Any

from cellplane.errors import FieldError, NotFound, ValidationFailed
from cellplane.identity.directory.bodies import (
    LdapBody,
)
from cellplane.identity.directory.common import (
    _audit,
)
from cellplane.identity.rbac import Principal
from cellplane.ids import utcnow
from cellplane.sealing import BIND_SECRET_COLUMN
from cellplane.services.audit import actor_of, record
from cellplane.services.context import Services
from cellplane.state.identity_models import (
    LdapConfig,
)

__all__ = [
    "LDAP_CHECK_FAILED",
    "LDAP_CHECK_FLOOR_S",
    "LdapCheckFailed",
    "delete_ldap",
    "get_ldap",
    "set_ldap",
]

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
        c.url, c.bind_dn = body.url, body.bind_dn
        c.bind_secret = svc.sealer.seal(body.bind_password, BIND_SECRET_COLUMN)
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
